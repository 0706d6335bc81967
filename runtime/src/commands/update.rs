//! `pic update`: bundles built and signed, applied into the inactive slot, the slots' status,
//! and the boot check that decides whether a version on trial is kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pic_builder::State;
use pic_builder::update::bundle::SigningKey;
use pic_builder::update::slots::{CheckRecord, Device, SlotState, Status};
use pic_builder::update::{Version, apply, bundle};
use serde_json::Value;

use crate::cli::{ApplianceArgs, DeviceArgs, UpdateCommand};
use crate::output::Output;

pub fn run(state: &State, command: &UpdateCommand, out: &Output) -> Result<bool> {
    match command {
        UpdateCommand::Bundle { output, min_from_version, cmdline_extra, appliance } => {
            let pic = std::env::current_exe().context("finding the pic binary")?;
            let (version, key) = version_and_key(appliance)?;
            let min_from_version: Version =
                min_from_version.parse().map_err(|e: String| anyhow::anyhow!("--min-from-version: {e}"))?;
            let output = output.clone().unwrap_or_else(|| PathBuf::from(format!("target/pic-{version}.picupd")));
            let inputs = appliance_inputs(appliance, &pic, None, &version, &key);
            let options = pic_builder::disk::BundleOptions { min_from_version: &min_from_version, cmdline_extra };
            let report = pic_builder::disk::bundle(&inputs, &options, &output)?;
            out.emit(&report, |r| {
                format!(
                    "wrote {} (version {}, {:.1} MB) in {:.1} s, signed by {}\n",
                    r.path.display(),
                    r.version,
                    r.size as f64 / 1e6,
                    r.seconds,
                    bundle::public_key(&key)
                )
            });
        }
        UpdateCommand::Pack { root, kernel, initrd, cmdline, version, min_from_version, update_key, output } => {
            let key = signing_key(update_key.as_deref())?;
            let parse = |text: &str, flag: &str| text.parse::<Version>().map_err(|e| anyhow::anyhow!("{flag}: {e}"));
            let manifest = bundle::Manifest {
                format: bundle::FORMAT,
                version: parse(version, "--image-version")?,
                architecture: bundle::ARCHITECTURE.into(),
                min_from_version: parse(min_from_version, "--min-from-version")?,
                cmdline: cmdline.clone(),
                payloads: Vec::new(),
            };
            let parts = bundle::Parts { root, kernel, initrd };
            let manifest = bundle::write(&parts, manifest, &key, output)?;
            let report = serde_json::json!({"path": output, "version": manifest.version, "public_key": bundle::public_key(&key)});
            out.emit(&report, |_| {
                format!(
                    "wrote {} (version {}), signed by {}\n",
                    output.display(),
                    manifest.version,
                    bundle::public_key(&key)
                )
            });
        }
        UpdateCommand::Apply { file, device } => {
            let device = device_or_fail(state, device)?;
            let mut last = 0;
            let applied = apply::apply(&device, file, &mut |done, total| {
                let percent = done * 100 / total.max(1);
                if percent >= last + 10 {
                    last = percent;
                    eprintln!("written: {percent} %");
                }
            })?;
            out.emit(&applied, |a| {
                format!(
                    "version {} written into slot {} ({:.1} MB in {:.1} s). Restart the device to start it \
                     (`systemctl reboot`): it is kept once its boot check passes, and after 3 failed tries the \
                     device comes back on this version by itself.\n",
                    a.version,
                    a.slot,
                    a.bytes as f64 / 1e6,
                    a.seconds
                )
            });
        }
        UpdateCommand::Status { device } => {
            let device = device_or_fail(state, device)?;
            device.note_rejections()?;
            let status = device.status()?;
            out.emit(&status, describe);
        }
        UpdateCommand::Check { timeout, api, device } => {
            let device = load_device(state, device)?;
            return check(device.as_ref(), *api, Duration::from_secs(*timeout));
        }
    }
    Ok(true)
}

/// The version asked for (or the clock's) and the signing key (made when missing).
pub fn version_and_key(args: &ApplianceArgs) -> Result<(Version, SigningKey)> {
    let version = match &args.version {
        Some(text) => text.parse().map_err(|e: String| anyhow::anyhow!("--image-version: {e}"))?,
        None => Version::from_clock(),
    };
    Ok((version, signing_key(args.update_key.as_deref())?))
}

/// The builder's signing key: `path`, or ~/.config/pic/update-signing.key; made when missing.
fn signing_key(path: Option<&Path>) -> Result<SigningKey> {
    let path = match path {
        Some(path) => path.to_owned(),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("no --update-key and no $HOME to keep the signing key in")?
            .join(".config/pic/update-signing.key"),
    };
    bundle::signing_key(&path, true).with_context(|| format!("the update signing key {}", path.display()))
}

pub fn appliance_inputs<'a>(
    args: &'a ApplianceArgs,
    pic: &'a Path,
    image_store: Option<&'a Path>,
    version: &'a Version,
    key: &'a SigningKey,
) -> pic_builder::disk::Inputs<'a> {
    pic_builder::disk::Inputs {
        definitions: &args.definitions,
        pic,
        webui: &args.webui,
        image_store,
        templates: &args.templates,
        cache: &args.cache,
        lock: &args.lock,
        update_lock: args.update_lock,
        version,
        update_key: key,
    }
}

/// The device's slots, or `None` on a machine not booted from a PIC image.
pub fn load_device(state: &State, args: &DeviceArgs) -> Result<Option<Device>> {
    Ok(Device::load(&args.layout, &args.kernel_cmdline, &args.trusted_key, &state.root().join("updates"))?)
}

fn device_or_fail(state: &State, args: &DeviceArgs) -> Result<Device> {
    load_device(state, args)?.with_context(|| {
        format!(
            "{} is missing: this machine was not started from a PIC disk image, so it has no slots to update",
            args.layout.display()
        )
    })
}

pub fn describe(status: &Status) -> String {
    let mut text = format!(
        "running version {} from slot {} ({})\n",
        status.version.as_ref().map_or("unknown".into(), |v| v.to_string()),
        status.booted_slot.as_deref().unwrap_or("none"),
        match status.boot {
            SlotState::Trying => "on trial",
            _ => "confirmed good",
        }
    );
    for slot in &status.slots {
        let state = match slot.state {
            SlotState::Good => "good".to_owned(),
            SlotState::Trying => format!("on trial, {} tries left", slot.tries_left.unwrap_or(0)),
            SlotState::Bad => "bad: the device fell back from it".to_owned(),
            SlotState::Empty => "empty".to_owned(),
        };
        text += &format!(
            "  slot {}{}: {} ({state})\n",
            slot.name,
            if slot.booted { " (booted)" } else { "" },
            slot.version.as_ref().map_or("-".into(), |v| v.to_string())
        );
    }
    for rejection in &status.rejected {
        text += &format!("rejected {} at {}: {}\n", rejection.version, rejection.at, rejection.reason);
    }
    match &status.not_ready_reason {
        Some(reason) => text += &format!("no update can be applied now: {reason}\n"),
        None => text += "an update can be applied (pic update apply FILE)\n",
    }
    text
}

/// Waits until Docker answers, `pic serve` answers and says the device is ready (after setup:
/// the current generation activated behind its health gate). Records what it found, for the
/// version the device may fall back to; false (exit 1) when something failed or `timeout` passed.
fn check(device: Option<&Device>, api: std::net::SocketAddr, timeout: Duration) -> Result<bool> {
    let started = Instant::now();
    let deadline = started + timeout;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let url = format!("http://{api}/api/setup/status");
    let mut seen: String;
    let verdict: std::result::Result<String, String> = loop {
        // Docker first: a version whose Docker cannot start fails at once.
        let docker =
            pic_builder::command::run("systemctl", &["show", "-p", "LoadState", "-p", "ActiveState", "docker.service"])
                .unwrap_or_default();
        if docker.contains("LoadState=masked") || docker.contains("ActiveState=failed") {
            break Err(format!("Docker cannot run ({})", docker.split_whitespace().collect::<Vec<_>>().join(", ")));
        }
        if !docker.contains("ActiveState=active") {
            seen = format!("Docker is not running yet ({})", docker.split_whitespace().collect::<Vec<_>>().join(", "));
        } else {
            match runtime.block_on(async { client.get(&url).send().await?.error_for_status()?.json::<Value>().await }) {
                Err(e) => seen = format!("pic serve does not answer at {url}: {e}"),
                Ok(status) => {
                    let phase = status["device"]["phase"].as_str().unwrap_or_default().to_owned();
                    if phase == "blocked" {
                        let problem = status["device"]["problem"]["message"].as_str().unwrap_or("a problem");
                        break Err(format!("the device is blocked: {problem}"));
                    }
                    let complete = status["complete"] == true;
                    if phase == "ready" && (!complete || status["ready"] == true) {
                        break Ok(if complete {
                            "Docker, the API and the current generation are up".to_owned()
                        } else {
                            "Docker and the API are up (setup is not done yet)".to_owned()
                        });
                    }
                    seen = format!("the device is {phase}; the current generation is not yet activated");
                }
            }
        }
        if Instant::now() > deadline {
            break Err(format!("not up within {} s: {seen}", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let ok = verdict.is_ok();
    let reason = match verdict {
        Ok(reason) | Err(reason) => reason,
    };
    println!(
        "boot check {} after {:.0} s: {reason}",
        if ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if let Some(device) = device {
        let version = device.status().ok().and_then(|s| s.version);
        let record = CheckRecord { version, ok, reason, at: jiff::Timestamp::now().to_string() };
        pic_builder::fsutil::ensure_dir(&device.state, 0o700)?;
        pic_builder::fsutil::write_json(&device.check_path(), &record, 0o600)?;
    }
    Ok(ok)
}
