//! `pic user`: passwords only as hashes in secrets/, daemon credential files that follow the
//! config, and changes that are refused with nothing written.

mod common;

use std::process::Command;

use common::{Cell, example, example_path};

fn started() -> Cell {
    let cell = Cell::new();
    cell.ok(&["init", "--config", example_path().to_str().unwrap()]);
    cell.ok(&["switch"]);
    cell
}

#[test]
fn add_passwd_remove() {
    let cell = started();
    let out = cell.with_stdin(&["user", "add", "carol", "--role", "peer"], "carol-password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cell.current(), Some(2));
    let users = cell.json(&["user", "list"]);
    let carol = users.as_array().unwrap().iter().find(|u| u["name"] == "carol").unwrap();
    assert_eq!((carol["role"].as_str(), carol["has_password"].as_bool()), (Some("peer"), Some(true)));

    // The hash is in secrets/ only; the password itself is nowhere in the state directory.
    let hashes = std::fs::read_to_string(cell.state().join("secrets/users.json")).unwrap();
    assert!(hashes.contains("$2y$") && !hashes.contains("carol-password"));
    let out = Command::new("grep").args(["-r", "-l", "carol-password"]).arg(cell.state()).output().unwrap();
    assert!(out.stdout.is_empty(), "password found in {}", String::from_utf8_lossy(&out.stdout));

    // Passwords for the example's users land in the files of the services the config gives them.
    let out = cell.with_stdin(&["user", "passwd", "bob"], "bob-password-1\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let credentials = cell.state().join("secrets/credentials");
    let dovecot = std::fs::read_to_string(credentials.join("dovecot.passwd")).unwrap();
    assert!(dovecot.starts_with("bob@home.cell:{BLF-CRYPT}$2y$"), "{dovecot}");
    assert!(std::fs::read_to_string(credentials.join("webdav.htpasswd")).unwrap().starts_with("bob:$2y$"));
    assert!(
        !std::fs::read_to_string(credentials.join("webdav.htpasswd")).unwrap().contains("carol"),
        "carol has no files"
    );

    // Removing a user still named by the config is refused, naming what refers to them.
    let out = cell.pic(&["user", "remove", "bob"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.calendar.users[1]"));
    assert_eq!(cell.current(), Some(2));

    let out = cell.pic(&["user", "remove", "carol"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cell.current(), Some(3));
    assert!(!std::fs::read_to_string(cell.state().join("secrets/users.json")).unwrap().contains("carol"));
}

#[test]
fn bad_input_changes_nothing() {
    let cell = started();
    let before = std::fs::read_to_string(cell.state().join("cell_config.json")).unwrap();
    for (args, input) in [
        (&["user", "add", "dave"][..], "short\n"),
        (&["user", "add", "Dave"][..], "long-enough-password\n"),
        (&["user", "add", "alice"][..], "long-enough-password\n"),
        (&["user", "passwd", "nobody"][..], "long-enough-password\n"),
        (&["user", "passwd", "alice"][..], ""),
    ] {
        let out = cell.with_stdin(args, input);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read_to_string(cell.state().join("cell_config.json")).unwrap(), before);
    assert_eq!(cell.generation_numbers(), vec![1]);
    assert!(!cell.state().join("secrets/users.json").exists());
}

#[test]
fn a_mailbox_change_changes_only_the_mail_bundle() {
    let cell = started();
    let mut config = example();
    config["services"]["mail"]["mailboxes"][1]["address"] = "robert@home.cell".into();
    let file = cell.write_config("mailbox.json", &config);
    let switched = cell.json(&["switch", "--config", &file]);
    assert_eq!(switched["build"]["changed_services"], serde_json::json!(["mail"]));
}

#[test]
fn admin_password_reset_prints_a_working_password_once() {
    let cell = started();
    let shown = cell.json(&["admin-password", "show"]);
    assert_eq!(shown, serde_json::json!([{"user": "alice", "has_password": false}]));
    let reset = cell.json(&["admin-password", "reset"]);
    assert_eq!(reset["user"], "alice");
    let password = reset["password"].as_str().unwrap();
    assert!(password.len() >= 20);
    let credentials = pic_builder::credentials::Credentials::new(cell.state().join("secrets"));
    assert!(credentials.verify("alice", password).unwrap());
    assert_eq!(cell.json(&["admin-password", "show"])[0]["has_password"], true);
    // Printed once: it is nowhere in the state directory.
    let out = Command::new("grep").args(["-r", "-l", password]).arg(cell.state()).output().unwrap();
    assert!(out.stdout.is_empty());
    assert_eq!(cell.pic(&["admin-password", "reset", "--user", "bob"]).status.code(), Some(2));
}
