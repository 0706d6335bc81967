//! `pic store`: the service store's index as the cell sees it (only what verified against the
//! keys its config trusts), and the apps installed from it.

use anyhow::{Context, Result, bail};
use pic_builder::State;
use pic_builder::apps::Manifest;
use serde::Serialize;

use crate::apps;
use crate::cli::StoreCommand;
use crate::docker::{Engine, Publish};
use crate::output::Output;

/// One app as `pic store list` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    host: &'a str,
    /// The installed version, if it is installed.
    installed: Option<&'a str>,
}

/// One installed app.
#[derive(Serialize)]
struct Installed<'a> {
    name: &'a str,
    version: &'a str,
    url: String,
    address: String,
}

/// What a removal did.
struct Removed {
    switched: pic_builder::state::SwitchOutcome,
    data_saved: Option<std::path::PathBuf>,
}

fn block_on<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(work)
}

pub fn run(state: &State, command: &StoreCommand, out: &Output) -> Result<()> {
    let desired = || state.desired_config()?.context("no desired config yet: set up the cell first");
    match command {
        StoreCommand::List { index } => {
            let config = desired()?;
            let opened = apps::open_index(state, index.as_deref())?;
            let listed: Vec<Listed> = opened
                .apps
                .iter()
                .map(|a| Listed {
                    name: &a.manifest.name,
                    version: &a.manifest.version,
                    description: &a.manifest.description,
                    host: &a.manifest.site.host,
                    installed: config.apps.iter().find(|i| i.name == a.manifest.name).map(|i| i.version.as_str()),
                })
                .collect();
            out.emit(&listed, |apps| {
                apps.iter()
                    .map(|a| {
                        let installed = a.installed.map(|v| format!(" (installed: {v})")).unwrap_or_default();
                        format!("{:<16} {:<16} {}{installed}\n", a.name, a.version, a.description)
                    })
                    .collect()
            });
        }
        StoreCommand::Show { name, index } => {
            let opened = apps::open_index(state, index.as_deref())?;
            let Some(app) = opened.app(name) else { bail!("the index has no app {name:?}") };
            out.emit(&Shown::from(&app.manifest), |m| {
                format!(
                    "{} {}\n{}\npackages:     {}\nsite:         {}.<cell domain> (port {} inside)\ncapabilities: {}\ndata:         {}\nreached by:   {}\nsettings:     {}",
                    m.name,
                    m.version,
                    m.description,
                    m.packages.join(", "),
                    m.host,
                    m.port,
                    if m.capabilities.is_empty() { "none".into() } else { m.capabilities.join(", ") },
                    if m.data.is_empty() { "none".into() } else { m.data.join(", ") },
                    m.reached_by.join(", "),
                    if m.settings.is_empty() { "none".into() } else { m.settings.join(", ") },
                )
            });
        }
        StoreCommand::Installed => {
            let config = desired()?;
            let domain = config.domain();
            let installed: Vec<Installed> = config
                .apps
                .iter()
                .map(|a| Installed {
                    name: &a.name,
                    version: &a.version,
                    url: format!("https://{}.{domain}/", a.manifest.site.host),
                    address: a.address.to_string(),
                })
                .collect();
            out.emit(&installed, |apps| {
                if apps.is_empty() {
                    return "no app is installed; `pic store list` shows the index's".into();
                }
                apps.iter().map(|a| format!("{:<16} {:<16} {}\n", a.name, a.version, a.url)).collect()
            });
        }
        StoreCommand::Install { name, settings, index, images, docker_socket }
        | StoreCommand::Update { name, settings, index, images, docker_socket } => {
            let update = matches!(command, StoreCommand::Update { .. });
            let opened = apps::open_index(state, index.as_deref())?;
            let manifest = &opened.app(name).with_context(|| format!("the index has no app {name:?}"))?.manifest;
            let settings = apps::Settings::from_pairs(manifest, settings)?;
            // Checked before the image is built: a wrong setting costs nothing.
            let plan = apps::plan(state, &opened, name, settings, update)?;
            block_on(async {
                let engine = Engine::connect(docker_socket, Publish::None).await?;
                apps::provide_image(&engine, &plan.app, &images.inputs()).await
            })?;
            let changed = apps::commit(state, &plan)?;
            let domain = desired()?.domain();
            let url = format!("https://{}.{domain}/", changed.app.manifest.site.host);
            #[derive(Serialize)]
            struct Done<'a> {
                name: &'a str,
                version: &'a str,
                generation: u64,
                url: &'a str,
                dropped_settings: &'a [String],
            }
            let done = Done {
                name,
                version: &changed.app.version,
                generation: changed.switched.to,
                url: &url,
                dropped_settings: &changed.dropped,
            };
            out.emit(&done, |d| {
                let mut s = format!(
                    "{} {} {}: generation {} (`pic serve` starts it; then {})",
                    if update { "updated" } else { "installed" },
                    d.name,
                    d.version,
                    d.generation,
                    d.url
                );
                if !d.dropped_settings.is_empty() {
                    s.push_str(&format!("\nthe new version has no setting {}", d.dropped_settings.join(", ")));
                }
                s
            });
        }
        StoreCommand::Remove { name, purge, docker_socket } => {
            let (switched, app) = apps::remove(state, name)?;
            let data_saved = match purge {
                false => None,
                true => {
                    // An engine that does not answer runs no container.
                    let stopped = block_on(async {
                        apps::stop_removed(&Engine::connect(docker_socket, Publish::None).await?, &app).await
                    });
                    if let Err(error) = stopped {
                        tracing::debug!(error = %format!("{error:#}"), "no container to stop before the purge");
                    }
                    apps::purge(state, &app)?
                }
            };
            let removed = Removed { switched, data_saved };
            #[derive(Serialize)]
            struct Done<'a> {
                name: &'a str,
                generation: u64,
                data_saved: Option<&'a std::path::Path>,
            }
            let done = Done { name, generation: removed.switched.to, data_saved: removed.data_saved.as_deref() };
            out.emit(&done, |d| {
                let mut s = format!("removed {}: generation {}", d.name, d.generation);
                match (purge, d.data_saved) {
                    (true, Some(path)) => s.push_str(&format!("; its data was moved to {}", path.display())),
                    (true, None) => s.push_str("; it had no data"),
                    (false, _) => s.push_str("; its data is kept (`--purge` deletes it)"),
                }
                s
            });
        }
        StoreCommand::Index { dir } => {
            let entries = pic_builder::apps::write_index(dir)?;
            out.emit(&entries, |entries| {
                let mut s = format!("wrote {} with", dir.join("index.json").display());
                for e in entries {
                    s.push_str(&format!("\n  {} {}", e.name, e.version));
                }
                s.push_str("\nsign it and every manifest: minisign -S -m index.json */manifest.toml");
                s
            });
        }
    }
    Ok(())
}

/// What `pic store show` says of a manifest.
#[derive(Serialize)]
struct Shown {
    name: String,
    version: String,
    description: String,
    packages: Vec<String>,
    host: String,
    port: u16,
    capabilities: Vec<String>,
    data: Vec<String>,
    reached_by: Vec<&'static str>,
    settings: Vec<String>,
}

impl From<&Manifest> for Shown {
    fn from(m: &Manifest) -> Shown {
        let access =
            [(m.access.peers, "devices of the VPN"), (m.access.lan, "the LAN"), (m.access.public, "the internet")];
        Shown {
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            packages: m.image.packages.clone(),
            host: m.site.host.clone(),
            port: m.container.port,
            capabilities: m.container.capabilities.clone(),
            data: m.data.clone(),
            reached_by: access.iter().filter(|(on, _)| *on).map(|(_, who)| *who).collect(),
            settings: m.settings.keys().cloned().collect(),
        }
    }
}
