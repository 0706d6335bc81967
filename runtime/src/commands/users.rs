//! `pic user`: adding, removing and listing users and setting their passwords.

use anyhow::{Context, Result, bail};
use pic_builder::config::{Role, User};
use pic_builder::credentials::check_password;
use pic_builder::{Error, State};
use serde::Serialize;

use crate::cli::{AdminPasswordCommand, RoleArg, UserCommand};
use crate::output::Output;

#[derive(Serialize)]
struct UserRow {
    name: String,
    role: Role,
    has_password: bool,
}

pub fn run(state: &State, command: &UserCommand, out: &Output) -> Result<()> {
    match command {
        UserCommand::List => {
            let config = state.desired_config()?.context("no desired config yet")?;
            let with_password = state.credentials().users_with_password()?;
            let rows: Vec<UserRow> = config
                .users
                .iter()
                .map(|u| UserRow { name: u.name.clone(), role: u.role, has_password: with_password.contains(&u.name) })
                .collect();
            out.emit(&rows, |rows| {
                let mut s = String::from("NAME                 ROLE   PASSWORD");
                for r in rows {
                    let role = if r.role == Role::Admin { "admin" } else { "peer" };
                    s.push_str(&format!("\n{:<20} {role:<6} {}", r.name, if r.has_password { "set" } else { "none" }));
                }
                s
            });
        }
        UserCommand::Add { name, role } => {
            let password = read_password(&format!("password for {name}: "))?;
            let writer = state.writer()?;
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Peer => Role::Peer,
            };
            let config = writer.desired_with(|c| {
                if c.users.iter().any(|u| &u.name == name) {
                    return Err(Error::Invalid(pic_builder::config::ValidationErrors::single(
                        "users",
                        format!("a user named {name:?} exists already"),
                        "choose another name, or `pic user passwd` to change their password",
                    )));
                }
                c.users.push(User { name: name.clone(), role, exit: None });
                Ok(())
            })?;
            state.credentials().set_password(name, &password)?;
            let switched = writer.build_and_switch(&config, &format!("pic user add {name}"))?;
            out.emit(&switched, |s| format!("added user {name}; generation {} is current", s.to));
        }
        UserCommand::Passwd { name } => {
            let password = read_password(&format!("new password for {name}: "))?;
            state.writer()?.set_password(name, &password)?;
            out.emit(&serde_json::json!({"user": name, "password": "set"}), |_| format!("password of {name} set"));
        }
        UserCommand::Remove { name } => {
            let writer = state.writer()?;
            let config = writer.desired_with(|c| {
                let before = c.users.len();
                c.users.retain(|u| &u.name != name);
                if c.users.len() == before { Err(Error::NoSuchUser(name.clone())) } else { Ok(()) }
            })?;
            let switched = writer.build_and_switch(&config, &format!("pic user remove {name}"))?;
            state.credentials().remove(name)?;
            // The daemons' files must forget the user too, even if no generation changed.
            state.credentials().write_daemon_files(&config)?;
            out.emit(&switched, |s| format!("removed user {name}; generation {} is current", s.to));
        }
    }
    Ok(())
}

pub fn admin_password(state: &State, command: &AdminPasswordCommand, out: &Output) -> Result<()> {
    let config = state.desired_config()?.context("no desired config yet: finish setup first")?;
    let admins: Vec<&str> = config.users.iter().filter(|u| u.role == Role::Admin).map(|u| u.name.as_str()).collect();
    match command {
        AdminPasswordCommand::Show => {
            let with_password = state.credentials().users_with_password()?;
            let rows: Vec<serde_json::Value> = admins
                .iter()
                .map(|a| serde_json::json!({"user": a, "has_password": with_password.iter().any(|u| u == a)}))
                .collect();
            out.emit(&rows, |rows| {
                let mut s = String::new();
                for r in rows {
                    let set = if r["has_password"] == true { "set" } else { "not set" };
                    s.push_str(&format!("{}: password {set}\n", r["user"].as_str().unwrap_or_default()));
                }
                s.push_str("(passwords are kept only as hashes and cannot be shown; `pic admin-password reset` makes a new one)");
                s
            });
        }
        AdminPasswordCommand::Reset { user } => {
            let name = match user {
                Some(u) if admins.contains(&u.as_str()) => u.clone(),
                Some(u) => bail!(Error::Invalid(pic_builder::config::ValidationErrors::single(
                    "--user",
                    format!("{u:?} is not an admin"),
                    "name a user with role admin (see `pic user list`)",
                ))),
                None => admins.first().map(|a| a.to_string()).context("the config has no admin user")?,
            };
            let _writer = state.writer()?;
            let password = pic_builder::credentials::random_key();
            state.credentials().set_password(&name, &password)?;
            state.credentials().write_daemon_files(&config)?;
            out.emit(&serde_json::json!({"user": name, "password": password}), |_| {
                format!("new password of {name}: {password}\n(shown once; it is stored only as a hash)")
            });
        }
    }
    Ok(())
}

/// A password from the terminal (not echoed) or the first line of standard input; checked here,
/// before anything changes.
fn read_password(prompt: &str) -> Result<String> {
    let password = super::read_secret(prompt)?;
    if password.is_empty() {
        bail!(Error::BadPassword("no password given on standard input".into()));
    }
    check_password(&password)?;
    Ok(password)
}
