//! The setup proxy: before the first generation exists there is no Caddy of the cell's own, yet
//! a person who just booted the appliance opens `http://<its address>/`. Until setup is done a
//! small Caddy from the proxy image forwards ports 80 and 443 on the host to `pic serve`; the
//! first activation of a generation removes it before the cell's proxy takes the ports.

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use pic_builder::State;
use pic_builder::render::WEBUI_PORT;

use super::{Engine, LABEL_SERVICE, container_name};

/// The service label and container name (`pic-setup-proxy`) of the setup proxy.
pub const SERVICE: &str = "setup-proxy";
const IMAGE: &str = "pic/proxy:latest";

/// The setup proxy's Caddyfile: plain HTTP on port 80 (unless `pic serve` answers there itself,
/// its front door), and HTTPS on 443 with a certificate from Caddy's own internal CA, made for
/// whatever name or address the browser asked for (it is self-signed either way; the cell CA does
/// not exist before setup).
fn caddyfile(http: bool) -> String {
    // Without a site on port 80 Caddy would still take it, for redirects to HTTPS.
    let (redirects, http) = match http {
        true => ("", format!("http:// {{\n\treverse_proxy 127.0.0.1:{WEBUI_PORT}\n}}\n")),
        false => ("\tauto_https disable_redirects\n", String::new()),
    };
    format!(
        "# The setup proxy of PIC: ports 80 (or only 443) go to `pic serve` until setup is done.\n\
         {{\n\
         \tadmin off\n\
         \tstorage file_system /tmp/caddy\n\
         \tskip_install_trust\n\
         \tdefault_sni pic\n\
         {redirects}\
         }}\n\
         {http}\
         https:// {{\n\
         \ttls internal {{\n\
         \t\ton_demand\n\
         \t}}\n\
         \treverse_proxy 127.0.0.1:{WEBUI_PORT}\n\
         }}\n"
    )
}

/// Starts the setup proxy unless it runs. Without the proxy image (a development machine that
/// has not built it) it says so and does nothing: `pic serve` itself still answers.
pub async fn ensure(engine: &Engine, state: &State) -> Result<bool> {
    let name = container_name(SERVICE);
    let existing = engine
        .containers()
        .await?
        .into_iter()
        .find(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE)).map(String::as_str) == Some(SERVICE));
    if let Some(existing) = existing {
        if !matches!(existing.state, Some(bollard::models::ContainerSummaryStateEnum::RUNNING)) {
            engine.start(&name).await?;
        }
        return Ok(true);
    }
    if engine.image_labels(IMAGE).await?.is_none() {
        tracing::debug!(image = IMAGE, "no setup proxy yet: the image is not loaded");
        return Ok(false);
    }
    let dir = state.root().join("run").join(SERVICE);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    pic_builder::fsutil::write_atomic(&dir.join("Caddyfile"), caddyfile(!engine.front_door).as_bytes(), 0o644)?;
    let host_config = HostConfig {
        // The host's own ports 80 and 443, on every address the host has (including ones DHCP
        // gives it later): only host networking does that without knowing them in advance.
        network_mode: Some("host".into()),
        binds: Some(vec![format!("{}:/etc/pic-setup-proxy:ro", dir.display())]),
        tmpfs: Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,mode=1777,size=16m".to_owned())])),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(vec!["NET_BIND_SERVICE".into()]),
        readonly_rootfs: Some(true),
        security_opt: Some(vec!["no-new-privileges".into()]),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(
            ["caddy", "run", "--config", "/etc/pic-setup-proxy/Caddyfile", "--adapter", "caddyfile"]
                .map(String::from)
                .to_vec(),
        ),
        // Root without capabilities but binding low ports: a host-network container cannot
        // lower net.ipv4.ip_unprivileged_port_start for itself.
        user: Some("root".into()),
        env: Some(vec!["XDG_CONFIG_HOME=/tmp".into(), "XDG_DATA_HOME=/tmp".into()]),
        labels: Some(HashMap::from([(LABEL_SERVICE.to_owned(), SERVICE.to_owned())])),
        host_config: Some(host_config),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    engine.api().create_container(Some(options), body).await.with_context(|| format!("creating container {name}"))?;
    engine.start(&name).await?;
    tracing::info!("setup proxy started: ports 80 and 443 go to pic serve until setup is done");
    Ok(true)
}
