//! The Docker engine, through bollard: the cell's network, its service containers, images and
//! volumes. Every container PIC manages carries the label `pic.service`; nothing else is touched.

pub mod activation;
pub mod collect_logs;
pub mod health;
pub mod image_store;
pub mod mounts;
pub mod setup_proxy;
pub mod spec;
pub mod stopped;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, DeviceMapping, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigLogConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectNetworkOptions, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use spec::ContainerSpec;

pub use crate::cli::Publish;

/// The label that marks a container as a service of the cell, with the service's name.
pub const LABEL_SERVICE: &str = "pic.service";
/// Hash of everything the container was created from (spec, image, mounts, owner): a different
/// hash means a new container.
pub const LABEL_SPEC: &str = "pic.spec";

/// The cell's user-defined bridge.
pub const NETWORK: &str = "cell-network";

/// A connection to the engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    socket: String,
    /// Who forwards the services' ports from the host (nobody in tests and on development
    /// machines, whose port 53 or 443 is not ours to take).
    pub publish: Publish,
    /// `pic serve` answers the host's port 80 itself (`--front-door`): the setup proxy takes 443 only.
    pub front_door: bool,
}

/// The error when the engine cannot be reached: it names the socket.
pub fn unreachable(socket: &str, error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("the Docker engine at {socket} cannot be reached ({error}); start dockerd or pass --docker-socket")
}

impl Engine {
    /// Connects and agrees on an API version; fails with the socket's name when nobody answers.
    pub async fn connect(socket: &str, publish: Publish) -> Result<Engine> {
        let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(socket, e))?
            .negotiate_version()
            .await
            .map_err(|e| unreachable(socket, e))?;
        Ok(Engine { docker, socket: socket.to_owned(), publish, front_door: false })
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    pub fn api(&self) -> &Docker {
        &self.docker
    }

    /// True when the engine answers now.
    pub async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(drop).map_err(|e| unreachable(&self.socket, e))
    }

    /// Creates the user-defined bridge (subnet, gateway) unless it exists with that subnet; one
    /// with another subnet is replaced once nothing is attached to it. When the firewall
    /// publishes the ports, the bridge also carries the host's own connections to 127.0.0.1.
    pub async fn ensure_network(&self, name: &str, subnet: &str, gateway: &str) -> Result<()> {
        self.make_network(name, subnet, gateway).await?;
        if self.publish == Publish::Firewall {
            let network = self
                .docker
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
                .with_context(|| format!("inspecting network {name}"))?;
            let bridge = network.options.as_ref().and_then(|o| o.get("com.docker.network.bridge.name")).cloned();
            let id = network.id.unwrap_or_default();
            let bridge = bridge.unwrap_or_else(|| format!("br-{}", &id[..id.len().min(12)]));
            // The ruleset forwards 127.0.0.1's published ports to the containers (as Docker does
            // for its own when it runs without its userland proxy); the kernel routes a source in
            // 127.0.0.0/8 out of an interface only with this switch. A /proc file: written in
            // place, not through a rename.
            let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
            std::fs::write(&path, "1").with_context(|| format!("writing {path}"))?;
        }
        Ok(())
    }

    async fn make_network(&self, name: &str, subnet: &str, gateway: &str) -> Result<()> {
        if let Ok(existing) = self.docker.inspect_network(name, None::<InspectNetworkOptions>).await {
            let same = existing
                .ipam
                .and_then(|i| i.config)
                .is_some_and(|c| c.iter().any(|c| c.subnet.as_deref() == Some(subnet)));
            if same {
                return Ok(());
            }
            self.docker.remove_network(name).await.with_context(|| format!("replacing network {name}"))?;
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.into()),
                    gateway: Some(gateway.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(LABEL_SERVICE.to_owned(), "network".to_owned())])),
            ..Default::default()
        };
        self.docker.create_network(request).await.with_context(|| format!("creating network {name} ({subnet})"))?;
        Ok(())
    }

    /// Every container PIC manages, running or not.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label", vec![LABEL_SERVICE])]))
            .build();
        self.docker.list_containers(Some(options)).await.map_err(|e| unreachable(&self.socket, e))
    }

    /// Creates and starts the container of `spec`, named `pic-<service>`.
    pub async fn create(
        &self,
        spec: &ContainerSpec,
        image: &str,
        mounts: &HashMap<String, std::path::PathBuf>,
        spec_hash: &str,
    ) -> Result<String> {
        let mut binds = Vec::new();
        for mount in &spec.mounts {
            let host = mounts.get(&mount.source).ok_or_else(|| anyhow!("no host path for mount {}", mount.source))?;
            binds.push(format!("{}:{}:{}", host.display(), mount.target, if mount.read_only { "ro" } else { "rw" }));
        }
        let tmpfs = spec.tmpfs.iter().map(|p| (p.clone(), "rw,nosuid,nodev,mode=1777,size=64m".to_owned())).collect();
        let mut exposed = Vec::new();
        let mut bindings = HashMap::new();
        for port in &spec.ports {
            let key = format!("{}/{}", port.container, port.protocol);
            exposed.push(key.clone());
            if self.publish == Publish::Docker {
                bindings.insert(key, Some(vec![PortBinding { host_ip: None, host_port: Some(port.host.to_string()) }]));
            }
        }
        let host_config = HostConfig {
            binds: Some(binds),
            tmpfs: Some(tmpfs),
            cap_drop: Some(spec.cap_drop.clone()),
            cap_add: Some(spec.cap_add.clone()),
            readonly_rootfs: Some(spec.read_only_root),
            security_opt: Some(vec!["no-new-privileges".into()]),
            // Docker's init as PID 1 passes SIGTERM on: a daemon that installs no handler for it
            // (PHP's built-in server, webmail's) would otherwise ignore it as PID 1, and every stop
            // and reboot would wait out Docker's 10 s before killing it.
            init: Some(true),
            port_bindings: Some(bindings),
            network_mode: Some(spec.network.name.clone()),
            dns: (!spec.dns.is_empty()).then(|| spec.dns.clone()),
            devices: (!spec.devices.is_empty()).then(|| {
                spec.devices
                    .iter()
                    .map(|path| DeviceMapping {
                        path_on_host: Some(path.clone()),
                        path_in_container: Some(path.clone()),
                        cgroup_permissions: Some("rwm".into()),
                    })
                    .collect()
            }),
            sysctls: (!spec.sysctls.is_empty())
                .then(|| spec.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            // Docker's own copy is bounded as `logs/<service>.log` is (`collect_logs`).
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "5m".to_owned()),
                    ("max-file".to_owned(), "5".to_owned()),
                ])),
            }),
            ..Default::default()
        };
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(spec.network.address.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(spec.command.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(spec.user.clone()),
            hostname: Some(spec.service.clone()),
            labels: Some(HashMap::from([
                (LABEL_SERVICE.to_owned(), spec.service.clone()),
                (LABEL_SPEC.to_owned(), spec_hash.to_owned()),
            ])),
            exposed_ports: Some(exposed),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(spec.network.name.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let name = container_name(&spec.service);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let began = std::time::Instant::now();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("creating container {name} from {image}"))?;
        let made = began.elapsed();
        self.start(&name).await?;
        tracing::info!(
            service = spec.service,
            create_seconds = made.as_secs_f64(),
            start_seconds = (began.elapsed() - made).as_secs_f64(),
            "container made"
        );
        Ok(created.id)
    }

    /// Removes the cell network if it is there.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing network {name}")),
        }
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        self.docker.start_container(name, None).await.with_context(|| format!("starting container {name}"))
    }

    pub async fn stop(&self, name: &str) -> Result<()> {
        let options = StopContainerOptionsBuilder::default().t(10).build();
        self.docker.stop_container(name, Some(options)).await.with_context(|| format!("stopping container {name}"))
    }

    pub async fn restart(&self, name: &str) -> Result<()> {
        self.docker.restart_container(name, None).await.with_context(|| format!("restarting container {name}"))
    }

    /// Stops and removes a container.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        self.docker.remove_container(name, Some(options)).await.with_context(|| format!("removing container {name}"))
    }

    pub async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::default().signal(signal).build();
        self.docker.kill_container(name, Some(options)).await.with_context(|| format!("sending {signal} to {name}"))
    }

    /// Runs `command` in a running container; fails unless it exits 0.
    pub async fn exec(&self, name: &str, command: &[String]) -> Result<String> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let exec = self
            .docker
            .create_exec(
                name,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("running {command:?} in {name}"))?;
        let mut output = String::new();
        if let StartExecResults::Attached { output: mut stream, .. } = self.docker.start_exec(&exec.id, None).await? {
            while let Some(chunk) = stream.next().await {
                output.push_str(&chunk?.to_string());
            }
        }
        let inspect = self.docker.inspect_exec(&exec.id).await?;
        match inspect.exit_code {
            Some(0) => Ok(output),
            code => Err(anyhow!("{command:?} in {name} exited with {code:?}: {}", output.trim())),
        }
    }

    /// The labels of a local image, or `None` when the engine does not have it.
    pub async fn image_labels(&self, image: &str) -> Result<Option<(String, HashMap<String, String>)>> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => {
                Ok(Some((inspect.id.unwrap_or_default(), inspect.config.and_then(|c| c.labels).unwrap_or_default())))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(unreachable(&self.socket, e)),
        }
    }

    /// Writes the docker archive of `image` (`docker save`) to `path`.
    pub async fn export_image(&self, image: &str, path: &Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::create(path).await.with_context(|| format!("creating {}", path.display()))?;
        // Hundreds of megabytes on a slow box: no request timeout.
        let docker = self.docker.clone().with_timeout(std::time::Duration::from_secs(3600));
        let mut chunks = docker.export_image(image);
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| unreachable(&self.socket, e)).with_context(|| format!("exporting {image}"))?;
            file.write_all(&chunk).await.with_context(|| format!("writing {}", path.display()))?;
        }
        file.flush().await.with_context(|| format!("writing {}", path.display()))
    }

    /// Loads a docker archive (`docker load`), streaming it from `path`. An archive that would
    /// not fit into Docker's store is refused before a byte is sent, naming how much it needs.
    pub async fn load_archive(&self, path: &Path) -> Result<()> {
        let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().await.with_context(|| format!("reading {}", path.display()))?.len();
        self.check_room(size).await?;
        let body = tokio_util::io::ReaderStream::new(file);
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default().quiet(true).build();
        // Loading every image takes minutes on a slow box (or a VM without KVM): no request timeout.
        let docker = self.docker.clone().with_timeout(std::time::Duration::from_secs(3600));
        let mut progress = docker.import_image_stream(options, body, None);
        while let Some(step) = progress.next().await {
            step.with_context(|| format!("loading {} into Docker", path.display()))?;
        }
        Ok(())
    }
}

impl Engine {
    /// Refuses a load of an archive of `size` bytes that Docker's store has no room for: the
    /// engine keeps the archive while it unpacks it, so a load takes up to twice its size. An
    /// engine whose store is not on this machine (its folder not here) is not checked.
    async fn check_room(&self, size: u64) -> Result<()> {
        let info = self.docker.info().await.map_err(|e| unreachable(&self.socket, e))?;
        let Some(root) = info.docker_root_dir.map(std::path::PathBuf::from).filter(|r| r.is_dir()) else {
            return Ok(());
        };
        let free = pic_builder::fsutil::free_bytes(&root)?;
        let needed = 2 * size + LOAD_MARGIN;
        if free < needed {
            return Err(pic_builder::Error::NoSpace {
                path: root,
                doing: "loading the images into Docker",
                needed_mb: needed.div_ceil(1 << 20),
                free_mb: free >> 20,
            }
            .into());
        }
        Ok(())
    }
}

/// Room kept free beyond what a load takes: Docker's own metadata, and the system's.
const LOAD_MARGIN: u64 = 64 << 20;

/// Loads the images Docker does not have at their key (one archive of just those); returns
/// their names.
pub async fn load_missing(
    engine: &Engine,
    build: &pic_builder::images::ImageBuild,
    images: &[pic_builder::images::BuiltImage],
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for image in images {
        let have = engine.image_labels(&image.tag()).await?;
        if have.is_none_or(|(_, labels)| labels.get(pic_builder::images::LABEL_KEY) != Some(&image.key)) {
            missing.push(image.clone());
        }
    }
    if !missing.is_empty() {
        let archive = build.cache.join("load.tar");
        let file = std::fs::File::create(&archive).with_context(|| format!("creating {}", archive.display()))?;
        if let Err(error) = build.write_archive(&missing, std::io::BufWriter::new(file)) {
            let _ = std::fs::remove_file(&archive);
            return Err(error.into());
        }
        let loaded = engine.load_archive(&archive).await;
        let _ = std::fs::remove_file(&archive);
        loaded?;
    }
    Ok(missing.into_iter().map(|i| i.name).collect())
}

/// The container of a service.
pub fn container_name(service: &str) -> String {
    format!("pic-{service}")
}

/// An image the engine has, as `GET /api/images` and `pic images list` show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub created: i64,
    /// The PIC image it is (`pic.image` label), if any.
    pub pic_image: Option<String>,
}

/// Every image the engine has.
pub async fn images(engine: &Engine) -> Result<Vec<ImageInfo>> {
    let list = engine
        .api()
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(|e| unreachable(engine.socket(), e))?;
    Ok(list
        .into_iter()
        .map(|i| ImageInfo {
            id: i.id,
            tags: i.repo_tags,
            size: i.size,
            created: i.created,
            pic_image: i.labels.get(pic_builder::images::LABEL_IMAGE).cloned(),
        })
        .collect())
}

/// A service container, as `GET /api/containers` and `pic containers list` show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ContainerInfo {
    pub name: String,
    pub service: String,
    /// `running`, `exited`, `created`, ...
    pub state: String,
    /// Docker's words: "Up 3 minutes".
    pub status: String,
    pub image: String,
    /// "healthy", or why not; `None` when not checked.
    pub health: Option<String>,
    /// How often the health monitor restarted it since `pic serve` started.
    pub restarts: u32,
    /// Who stopped it, when an admin did: it stays stopped until started again.
    pub stopped: Option<stopped::Stop>,
}

/// The managed containers, by service name.
pub async fn container_infos(engine: &Engine) -> Result<Vec<ContainerInfo>> {
    let mut infos: Vec<ContainerInfo> = engine
        .containers()
        .await?
        .into_iter()
        .map(|c| {
            let service = c.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE)).cloned().unwrap_or_default();
            ContainerInfo {
                name: c.names.and_then(|n| n.into_iter().next()).unwrap_or_default().trim_start_matches('/').to_owned(),
                service,
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                health: None,
                restarts: 0,
                stopped: None,
            }
        })
        .collect();
    infos.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(infos)
}

/// A container's log: the last `tail` lines, and with `follow` what it prints afterwards.
pub fn logs(
    engine: &Engine,
    name: &str,
    tail: u32,
    follow: bool,
) -> impl futures_util::Stream<Item = Result<String>> + use<> {
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail.to_string())
        .build();
    let name = name.to_owned();
    engine
        .api()
        .logs(&name, Some(options))
        .map(move |chunk| chunk.map(|c| c.to_string()).with_context(|| format!("reading the log of {name}")))
}
