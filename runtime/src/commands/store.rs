//! `pic store`: the service store's index as the cell sees it: only what verified against the
//! keys its config trusts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pic_builder::State;
use pic_builder::apps::{self, Manifest};
use serde::Serialize;

use crate::cli::StoreCommand;
use crate::output::Output;

/// One app as `pic store list` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    host: &'a str,
}

pub fn run(state: &State, command: &StoreCommand, out: &Output) -> Result<()> {
    let (StoreCommand::List { index } | StoreCommand::Show { index, .. }) = command;
    let config = state.desired_config()?.context("no desired config yet: set up the cell first")?;
    let source = match index {
        Some(source) => source.clone(),
        None => config.store.index.clone().context("no index: set store.index in the cell config or pass --index")?,
    };
    let keys = apps::parse_keys(&config.store.trusted_keys).map_err(anyhow::Error::msg)?;
    let opened = open(state, &source, &keys).with_context(|| format!("the index {source} is refused"))?;
    match command {
        StoreCommand::List { .. } => {
            let listed: Vec<Listed> = opened
                .apps
                .iter()
                .map(|a| Listed {
                    name: &a.manifest.name,
                    version: &a.manifest.version,
                    description: &a.manifest.description,
                    host: &a.manifest.site.host,
                })
                .collect();
            out.emit(&listed, |apps| {
                apps.iter().map(|a| format!("{:<16} {:<16} {}\n", a.name, a.version, a.description)).collect()
            });
        }
        StoreCommand::Show { name, .. } => {
            let Some(app) = opened.app(name) else { bail!("the index has no app {name:?}") };
            out.emit(&Shown::from(&app.manifest), |m| {
                format!(
                    "{} {}\n{}\npackages:     {}\nsite:         {}.<cell domain> (port {} inside)\ncapabilities: {}\ndata:         {}\nreached by:   {}",
                    m.name,
                    m.version,
                    m.description,
                    m.packages.join(", "),
                    m.host,
                    m.port,
                    if m.capabilities.is_empty() { "none".into() } else { m.capabilities.join(", ") },
                    if m.data.is_empty() { "none".into() } else { m.data.join(", ") },
                    m.reached_by.join(", "),
                )
            });
        }
    }
    Ok(())
}

/// The largest index archive the cell downloads.
const MAX_ARCHIVE: usize = 256 << 20;

/// Opens an index from a folder, a `.tar.zst` on the cell, or the HTTP(S) URL of one (downloaded
/// into `run/`, unpacked into `run/store-index/`).
fn open(state: &State, source: &str, keys: &[apps::PublicKey]) -> Result<apps::Index> {
    let scratch = state.root().join("run/store-index");
    if source.starts_with("http://") || source.starts_with("https://") {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let bytes = runtime
            .block_on(async {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
                client.get(source).send().await?.error_for_status()?.bytes().await
            })
            .map_err(|e| anyhow::anyhow!("downloading it: {}", e.without_url()))?;
        if bytes.len() > MAX_ARCHIVE {
            bail!("the index is {} bytes; the cell reads at most {MAX_ARCHIVE}", bytes.len());
        }
        let archive = state.root().join("run/store-index.tar.zst");
        pic_builder::fsutil::ensure_dir(&state.root().join("run"), 0o755)?;
        pic_builder::fsutil::write_atomic(&archive, &bytes, 0o644)?;
        return Ok(apps::open_archive(&archive, &scratch, keys)?);
    }
    let path = Path::new(source);
    if path.is_dir() { Ok(apps::open(path, keys)?) } else { Ok(apps::open_archive(path, &scratch, keys)?) }
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
