//! What each `pic` command does, on top of the builder's state directory: the generation
//! commands here, the others in a module each.

mod backups;
mod certs;
mod containers;
mod ddns;
mod exits;
mod images;
mod links;
mod peers;
mod store;
mod update;
mod users;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pic_builder::config::{self, ValidConfig};
use pic_builder::diff::{Change, GenerationDiff};
use pic_builder::state::{BuildOutcome, GenerationInfo, SwitchOutcome};
use pic_builder::{State, fsutil};
use serde::Serialize;

use crate::cli::{Cli, Command, WireGuardBackend};
use crate::output::Output;

pub fn run(cli: &Cli, out: &Output, file_level: Option<crate::logs::FileLevel>) -> Result<ExitCode> {
    let state = State::new(&cli.state);
    match &cli.command {
        Command::Init { config } => {
            let config = config.as_deref().map(load).transpose()?;
            let report = state.init(config.as_ref())?;
            out.emit(&report, |r| {
                let mut s = format!("initialized {}", r.root.display());
                if r.created_wireguard_key {
                    s.push_str("\ncreated the WireGuard server key in secrets/");
                }
                if r.created_ca {
                    s.push_str("\ncreated the cell CA in secrets/ca/ (`pic ca export` prints its certificate)");
                }
                if r.wrote_config {
                    s.push_str("\nset the desired cell config");
                }
                s
            });
        }
        Command::Validate { file } => {
            let config = load(file)?;
            #[derive(Serialize)]
            struct Valid<'a> {
                valid: bool,
                cell: &'a str,
            }
            out.emit(&Valid { valid: true, cell: &config.cell.name }, |_| format!("{}: valid", file.display()));
        }
        Command::Build { config } => {
            let config = config.as_deref().map(load).transpose()?;
            let outcome = state.writer()?.build(config.as_ref(), &reason(&cli.command))?;
            out.emit(&outcome, describe_build);
        }
        Command::Switch { number, config } => {
            let writer = state.writer()?;
            let (built, number) = match number {
                Some(n) => (None, *n),
                None => {
                    let config = config.as_deref().map(load).transpose()?;
                    let outcome = writer.build(config.as_ref(), &reason(&cli.command))?;
                    let n = outcome.generation;
                    (Some(outcome), n)
                }
            };
            let switched = writer.switch(number)?;
            #[derive(Serialize)]
            struct Switched {
                build: Option<BuildOutcome>,
                #[serde(flatten)]
                switch: SwitchOutcome,
            }
            out.emit(&Switched { build: built, switch: switched }, |s| {
                let mut text = s.build.as_ref().map(describe_build).unwrap_or_default();
                text.push('\n');
                text.push_str(&describe_switch(&s.switch));
                text
            });
        }
        Command::Rollback => {
            let outcome = state.writer()?.rollback()?;
            out.emit(&outcome, describe_switch);
        }
        Command::Generations => {
            let generations = state.generations()?;
            out.emit(&generations, |g| table(g));
        }
        Command::Diff { from, to } => {
            let diff = state.diff(*from, *to)?;
            out.emit(&diff, describe_diff);
        }
        Command::Gc { keep, max_store } => {
            let limits = pic_builder::GcLimits { keep: *keep, max_store_bytes: max_store.map(|mb| mb << 20) };
            let report = state.writer()?.gc(limits)?;
            out.emit(&report, |r| {
                let mut said = format!(
                    "removed {} generation(s) {:?} and {} store path(s); the store holds {:.1} MB",
                    r.removed_generations.len(),
                    r.removed_generations,
                    r.removed_store_paths.len(),
                    r.store_bytes as f64 / f64::from(1 << 20)
                );
                if r.over_limit {
                    said.push_str(
                        "\nstill above --max-store: the current generation, the one before it and the last one \
                         that passed the health gate stay, so that a rollback always works",
                    );
                }
                said
            });
        }
        Command::Verify => {
            let report = state.verify()?;
            out.emit(&report, |r| {
                let mut s = format!("checked {} store path(s) and {} generation(s)", r.store_paths, r.generations);
                for p in &r.problems {
                    let _ = write!(s, "\nMISMATCH {}: {}", p.what, p.detail);
                }
                if r.problems.is_empty() {
                    s.push_str(": all match");
                }
                s
            });
            if !report.problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Render { config, out: dir } => {
            let config = load(config)?;
            let bundles = state.render(&config).context("rendering needs the cell's public keys")?;
            for (service, bundle) in &bundles {
                for (file, contents) in &bundle.files {
                    let path = dir.join(service).join(file);
                    let parent = path.parent().expect("a bundle file has a folder");
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                    fsutil::write_atomic(&path, contents, 0o644)?;
                }
            }
            let services: Vec<&String> = bundles.keys().collect();
            out.emit(&services, |s| {
                format!(
                    "rendered {} into {}",
                    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    dir.display()
                )
            });
        }
        Command::Migrate { file, dry_run } => migrate(file, *dry_run, out)?,
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&config::json_schema())?);
        }
        Command::Openapi => {
            println!("{}", crate::serve::openapi().to_pretty_json()?);
        }
        Command::Cert(command) => certs::cert(&state, command, out)?,
        Command::Ca(command) => certs::ca(&state, command)?,
        Command::Metrics(crate::cli::MetricsCommand::Token) => {
            println!("{}", crate::serve::metrics::token(state.secrets().dir())?);
        }
        Command::User(command) => users::run(&state, command, out)?,
        Command::AdminPassword(command) => users::admin_password(&state, command, out)?,
        Command::Peer(command) => peers::run(&state, command, out)?,
        Command::Backup { scheduled: true, .. } => backups::scheduled(&state, out)?,
        Command::Backup { output, include_data, passphrase, .. } => {
            backups::backup(&state, output.as_deref(), *include_data, passphrase, out)?
        }
        Command::BackupKey { passphrase } => backups::set_up_key(&state, passphrase, out)?,
        Command::Restore { file, dry_run, include_data, passphrase, docker_socket } => {
            backups::restore(&state, file, *dry_run, *include_data, passphrase, docker_socket, out)?
        }
        Command::Backups => backups::list(&state, out)?,
        Command::Ddns(command) => {
            if !ddns::run(&state, command, out)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Store(command) => store::run(&state, command, out)?,
        Command::Link(command) => links::run(&state, command, out)?,
        Command::Exit(command) => exits::run(&state, command, out)?,
        Command::Update(command) => {
            if !update::run(&state, command, out)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Activate { docker, health_timeout } => {
            if !containers::activate(&state, docker, *health_timeout, out)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Logs { service, level, q, since, lines } => {
            let query = crate::logs::Query {
                service: service.clone(),
                level: *level,
                q: q.clone(),
                since: *since,
                limit: Some(*lines),
            };
            let dir = crate::logs::dir(state.root());
            let entries = crate::logs::search(&dir, service.as_deref(), &query)?;
            out.emit(&entries, |entries| {
                if entries.is_empty() {
                    return format!("no log entry matches (the logs are in {})", dir.display());
                }
                entries.iter().map(crate::logs::describe).collect::<Vec<_>>().join("\n")
            });
        }
        Command::Containers(command) => containers::run(&state, command, out)?,
        Command::Images(command) => images::run(command, out)?,
        Command::Image(command) => images::image(command, out)?,
        Command::Serve {
            listen,
            wireguard,
            wireguard_interface,
            firewall,
            docker,
            no_containers,
            health_timeout,
            monitor_interval,
            webui,
            front_door,
            console_greeting,
            dns_propagation,
            images,
        } => {
            let backend = match wireguard {
                WireGuardBackend::Kernel => Some(wireguard_control::Backend::Kernel),
                WireGuardBackend::Userspace => Some(wireguard_control::Backend::Userspace),
                WireGuardBackend::Off => None,
            };
            let interface = backend.map(|b| crate::wireguard::Interface::new(wireguard_interface, b)).transpose()?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let options = crate::serve::Options {
                listen: *listen,
                wireguard: interface,
                firewall: *firewall,
                file_level,
                docker: (!no_containers).then(|| docker.clone()),
                health_timeout: std::time::Duration::from_secs(*health_timeout),
                monitor_interval: std::time::Duration::from_secs(*monitor_interval),
                webui: Some(webui.clone()),
                front_door: *front_door,
                greeting: console_greeting.clone(),
                dns_propagation: dns_propagation.map(std::time::Duration::from_secs),
                images: images.inputs(),
                updates: update::load_device(&state, &crate::cli::DeviceArgs::appliance())?,
            };
            runtime.block_on(crate::serve::serve(state, options))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pic migrate`: a config file in the current format, checked.
fn migrate(file: &Path, dry_run: bool, out: &Output) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let version = config::version_of(&text).map_err(pic_builder::Error::from)?;
    let valid = config::parse(&text).map_err(pic_builder::Error::from)?;
    let migrated = config::to_canonical_json(&valid);
    let current = config::CURRENT_VERSION;
    if dry_run {
        eprintln!("{}: version {version} read as version {current}; nothing changed", file.display());
        print!("{migrated}");
        return Ok(());
    }
    if version == current {
        out.emit(&serde_json::json!({ "from": version, "to": current, "changed": false }), |_| {
            format!("{} is already version {current}: left as it is", file.display())
        });
        return Ok(());
    }
    let kept = file.with_file_name(format!("{}.v{version}", file.file_name().unwrap_or_default().to_string_lossy()));
    pic_builder::fsutil::write_atomic(&kept, text.as_bytes(), 0o600)?;
    pic_builder::fsutil::write_atomic(file, migrated.as_bytes(), 0o600)?;
    out.emit(&serde_json::json!({ "from": version, "to": current, "changed": true, "kept": kept }), |_| {
        format!(
            "{} migrated from version {version} to {current}; the old text is in {}",
            file.display(),
            kept.display()
        )
    });
    Ok(())
}

fn load(path: &Path) -> Result<ValidConfig> {
    config::load(path).with_context(|| format!("reading {}", path.display()))
}

/// The reason recorded in a generation built by this command.
fn reason(command: &Command) -> String {
    match command {
        Command::Build { config: Some(f) } => format!("pic build --config {}", f.display()),
        Command::Switch { config: Some(f), .. } => format!("pic switch --config {}", f.display()),
        Command::Build { .. } => "pic build".into(),
        _ => "pic switch".into(),
    }
}

fn describe_build(b: &BuildOutcome) -> String {
    if b.created {
        format!("built generation {} (changed: {})", b.generation, list_or_none(&b.changed_services))
    } else {
        format!("nothing changed: the config builds into generation {}", b.generation)
    }
}

fn describe_switch(s: &SwitchOutcome) -> String {
    match s.from {
        Some(from) if from == s.to => format!("generation {} is already current", s.to),
        Some(from) => format!("switched from generation {from} to {}", s.to),
        None => format!("switched to generation {}", s.to),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

fn table(generations: &[GenerationInfo]) -> String {
    if generations.is_empty() {
        return "no generations yet; `pic switch` builds the first".into();
    }
    let mut s = String::from("   GEN  CREATED               SERVICES  WHAT CHANGED (REQUEST)");
    for g in generations {
        let m = &g.manifest;
        let mark = if g.current { '*' } else { ' ' };
        let _ = write!(
            s,
            "\n{mark} {:>4}  {:<20}  {:>8}  {} ({})",
            m.number,
            m.created,
            m.services.len(),
            g.summary.join("; "),
            m.reason
        );
        if let Some(failed) = &g.failed {
            let _ = write!(s, "  [FAILED, rolled back: {}]", failed.reason);
        }
    }
    s
}

fn describe_diff(d: &GenerationDiff) -> String {
    let mut s = format!("generation {} -> {}\n", d.from, d.to);
    for line in &d.summary {
        let _ = writeln!(s, "  {line}");
    }
    if d.config.is_empty() && d.services.is_empty() {
        s.push_str("no differences\n");
    }
    s.push_str(&d.config);
    for service in &d.services {
        let change = match service.change {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        };
        let _ = writeln!(s, "\n== {} ({change})", service.service);
        for f in &service.files {
            s.push_str(&f.unified);
        }
    }
    s
}

/// A secret from the terminal (not echoed) or the first line of standard input.
pub fn read_secret(prompt: &str) -> Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("reading it from the terminal");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading it from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
