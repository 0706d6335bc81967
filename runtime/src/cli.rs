//! The command-line grammar of `pic`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pic_builder::state::DEFAULT_STATE_DIR;

/// The Personal Internet Cell: one declarative config, immutable generations, atomic switches.
#[derive(Debug, Parser)]
#[command(name = "pic", version)]
pub struct Cli {
    /// The state directory.
    #[arg(long, global = true, env = "PIC_STATE", default_value = DEFAULT_STATE_DIR)]
    pub state: PathBuf,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lay out the state directory and create the server keys; with --config, set the desired config.
    Init {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a cell config and report every problem in it.
    Validate { file: PathBuf },
    /// Build a generation from FILE (which becomes the desired config) or from the desired config.
    Build {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Switch to generation N, or build (as `build` does) and switch to the result.
    Switch {
        number: Option<u64>,
        #[arg(long, conflicts_with = "number")]
        config: Option<PathBuf>,
    },
    /// Switch to the generation before the current one.
    Rollback,
    /// List the generations.
    Generations,
    /// Show what changed from generation A to B: config, services, files.
    Diff { from: u64, to: u64 },
    /// Remove old generations and unreferenced store paths (never the current one or its predecessor).
    Gc {
        /// Keep the N newest generations.
        #[arg(long, required_unless_present = "max_store")]
        keep: Option<usize>,
        /// Remove the oldest generations until what the kept ones reference takes at most MB.
        #[arg(long, value_name = "MB")]
        max_store: Option<u64>,
    },
    /// Re-hash the store and check every generation; names whatever does not match.
    Verify,
    /// Render a config into DIR/<service>/ without touching the store.
    Render {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the JSON Schema of the cell config.
    Schema,
    /// Bring a config file of an older format version to the current one (it is checked as
    /// well); the file is rewritten, its old text kept beside it as `FILE.v<old version>`.
    Migrate {
        file: PathBuf,
        /// Print the migrated config on stdout; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// The certificates the cell CA issued.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The cell's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// `GET /metrics` for a scraper.
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Serve the HTTP API (and, once built, the web UI).
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
        /// How peers are applied live: the kernel module (the appliance), wireguard-go
        /// (`userspace`, for machines without the module), or not at all.
        #[arg(long, value_enum, default_value = "kernel")]
        wireguard: WireGuardBackend,
        /// The WireGuard interface to manage.
        #[arg(long, default_value = "wg0")]
        wireguard_interface: String,
        /// Load the cell's nftables ruleset into this network namespace (the appliance does; off
        /// by default, as its drop policy would close a development machine).
        #[arg(long)]
        firewall: bool,
        #[command(flatten)]
        docker: DockerArgs,
        /// Do not run the service containers (the API and WireGuard only).
        #[arg(long)]
        no_containers: bool,
        /// How long a changed service may take to pass its health check before the generation
        /// is rolled back, in seconds.
        #[arg(long, default_value_t = 60)]
        health_timeout: u64,
        /// How often the health monitor checks every service, in seconds.
        #[arg(long, default_value_t = 10)]
        monitor_interval: u64,
        /// The built web UI to serve (`webui/dist` after `make webui`).
        #[arg(long, env = "PIC_WEBUI", default_value = "webui/dist")]
        webui: PathBuf,
        /// Also answer at this address (the appliance: 0.0.0.0:80, where the firewall does not
        /// send the port to the cell's proxy): a page that follows the device's start, or names
        /// the problem that stops it, until the cell is ready; then the web UI. The setup proxy
        /// then serves only port 443.
        #[arg(long)]
        front_door: Option<std::net::SocketAddr>,
        /// Write what the device is doing, as the console's login greeting, to this file (the
        /// appliance: /run/issue, which agetty shows; it is asked to show it again on changes).
        #[arg(long)]
        console_greeting: Option<PathBuf>,
        /// How long, in seconds, the DDNS provider's name servers get to serve a new TXT record
        /// before the ACME CA is asked to look (DNS-01); by default 10 for Cloudflare and 60 for
        /// DuckDNS.
        #[arg(long)]
        dns_propagation: Option<u64>,
        /// Where the images of apps from the service store are built.
        #[command(flatten)]
        images: AppImageArgs,
    },
    /// Bring the service containers in line with the current generation (what `pic serve` does
    /// after every change), wait until the changed ones are healthy, and report what it did.
    Activate {
        #[command(flatten)]
        docker: DockerArgs,
        #[arg(long, default_value_t = 60)]
        health_timeout: u64,
    },
    /// Search the logs of `pic serve` and of every service (logs/<service>.log), oldest first:
    /// what `GET /api/logs` and the Logs page show.
    Logs {
        /// `api` (pic serve), a service or an app; all of them when absent.
        #[arg(long)]
        service: Option<String>,
        /// The least severe level shown: error, warn, info or debug.
        #[arg(long, value_parser = parse_level)]
        level: Option<pic_builder::config::LogLevel>,
        /// Text an entry must contain.
        #[arg(long, short)]
        q: Option<String>,
        /// Entries from this time on (RFC 3339, e.g. 2026-12-01T03:00:00Z).
        #[arg(long)]
        since: Option<jiff::Timestamp>,
        /// The newest this many (1000 at most).
        #[arg(long, default_value_t = 50)]
        lines: usize,
    },
    /// The service containers: list, start, stop, restart, remove, logs.
    #[command(subcommand)]
    Containers(ContainersCommand),
    /// Service images: build them from Debian packages, list them.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// The flashable disk image of the appliance.
    #[command(subcommand)]
    Image(ImageCommand),
    /// VPN peers: add (a key pair and address are chosen when not given), list, remove, config.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// The people who log in: their roles and passwords.
    #[command(subcommand)]
    User(UserCommand),
    /// The admin's password: whether one is set, or a new random one.
    #[command(subcommand)]
    AdminPassword(AdminPasswordCommand),
    /// Back up the cell: config, generations, store and (with a passphrase, encrypted) secrets;
    /// with --include-data also the services' data. Written into backups/ unless --output.
    Backup {
        #[arg(long, conflicts_with = "scheduled")]
        output: Option<PathBuf>,
        #[arg(long, conflicts_with = "scheduled")]
        include_data: bool,
        /// Make the archive the schedule makes (`backups` in the config), now: into its
        /// destination, the secrets to the backup key, then the retention.
        #[arg(long)]
        scheduled: bool,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Set up the backup key with the backup passphrase (asked twice, or --passphrase-file):
    /// scheduled archives encrypt the secrets to it, so no passphrase is stored, and a restore of
    /// one needs only the passphrase.
    BackupKey {
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Restore a backup: everything in it is checked first; its current generation becomes a new
    /// generation here (roll back to undo), the local history is kept.
    Restore {
        /// An archive, or the name of one in backups/.
        file: PathBuf,
        /// Check the archive and report what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also replace the services' data with the archive's (the replaced data is set aside in
        /// backups/).
        #[arg(long)]
        include_data: bool,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        /// The engine whose containers of restored data are recreated.
        #[arg(long, env = "PIC_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
        docker_socket: String,
    },
    /// List the backups in backups/, and what the schedule did and does next.
    Backups,
    /// Dynamic DNS (domain mode `ddns`): what was published, an update now, the provider's
    /// credential, the name's certificate by DNS-01 now.
    #[command(subcommand)]
    Ddns(DdnsCommand),
    /// The service store: the apps of its index, each signature checked against the keys the
    /// cell config trusts (`store.trusted_keys`).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Links with other cells: site-to-site WireGuard tunnels with per-service grants, kept in
    /// step by peer-sync through the tunnel.
    #[command(subcommand)]
    Link(LinkCommand),
    /// Exits: tunnels to VPN providers that chosen devices' internet traffic leaves through
    /// (with a kill switch: when the exit is down, their traffic is dropped, never sent through
    /// the cell's own uplink).
    #[command(subcommand)]
    Exit(ExitCommand),
    /// Updates of a flashed device: build a signed bundle, apply one into the inactive slot, the
    /// slots' status, the boot check of a version on trial.
    #[command(subcommand)]
    Update(UpdateCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExitCommand {
    /// Add an exit from a provider's WireGuard file (or replace the exit of that name); its
    /// keys are kept in secrets/, the rest goes into the config.
    #[command(group(clap::ArgGroup::new("kind").required(true).args(["wireguard", "openvpn", "tor"])))]
    Add {
        /// A name of at most 12 characters, e.g. `mullvad`.
        name: String,
        /// The provider's wg-quick file.
        #[arg(long)]
        wireguard: Option<PathBuf>,
        /// The provider's OpenVPN file (`.ovpn`, with its keys inline); the exit runs in a
        /// container of its own.
        #[arg(long, requires = "dns")]
        openvpn: Option<PathBuf>,
        /// The provider's DNS server (OpenVPN: its guide names it), asked through the tunnel.
        #[arg(long)]
        dns: Option<std::net::Ipv4Addr>,
        /// The user name of your account with the provider, when its OpenVPN file asks for one
        /// (the password is read from standard input, or prompted).
        #[arg(long, requires = "openvpn")]
        username: Option<String>,
        /// Out through Tor (TCP and names only; the rest of the devices' traffic is dropped),
        /// in a container of its own.
        #[arg(long)]
        tor: bool,
    },
    /// The exits: whether each is up, its last handshake and traffic, its devices.
    List,
    /// Remove an exit (refused while devices or users are sent through it).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Print an invitation token for another cell (signed by this cell, used once).
    Invite {
        /// Services of this cell the other cell may reach, e.g. `calendar,files`.
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
        /// Hours until the invitation expires.
        #[arg(long, default_value_t = 168, value_parser = clap::value_parser!(u32).range(1..=2160))]
        expires_hours: u32,
        /// Where the other cell completes the exchange (default `https://<this cell's domain>`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Accept another cell's invitation: the exchange is completed with it, then both cells
    /// have the link (a new generation on each side).
    Accept {
        token: String,
        /// Services of this cell the other cell may reach.
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
    },
    /// The linked cells: grants both ways, the last peer-sync.
    List,
    /// Set the services of this cell a linked cell may reach (none: `--grant ''`).
    Grant {
        name: String,
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
    },
    /// Remove a link here and, when it can be reached, on the other cell.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DdnsCommand {
    /// What was published and when, the last error, and whether updates are held.
    Status,
    /// Learn the public address and publish it now, even when it did not change.
    Update,
    /// Keep the provider's token or password (from --file, or typed; never in the config).
    Credential {
        /// A file whose first line is the credential.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Ask the ACME CA for the name's certificate now, by DNS-01 through the provider (Cloudflare
    /// and DuckDNS; `pic serve` also does it when one is due). A running `pic serve` hands it to
    /// the services.
    Certificate {
        /// Seconds the provider's name servers get before the CA looks (by default 10 for
        /// Cloudflare, 60 for DuckDNS).
        #[arg(long)]
        dns_propagation: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// The apps of the index (every file's signature and every manifest checked first).
    List {
        /// The index (a folder or `.tar.zst`, or the HTTP(S) URL of a `.tar.zst`), when not the
        /// config's `store.index`.
        #[arg(long)]
        index: Option<String>,
    },
    /// One app's manifest: image, container, site, access, data folders, settings.
    Show {
        name: String,
        #[arg(long)]
        index: Option<String>,
    },
    /// The apps installed in the cell (the desired config's).
    Installed,
    /// Install an app of the index: its image is built from Debian packages, then a new
    /// generation with the app is switched to (`pic serve` starts it behind its health gate).
    Install {
        name: String,
        /// A setting of the app, `name=value` (repeat for several); the others take their
        /// defaults, secret ones are made by the cell.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        #[arg(long)]
        index: Option<String>,
        #[command(flatten)]
        images: AppImageArgs,
        #[arg(long, env = "PIC_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
        docker_socket: String,
    },
    /// Install the index's version of an installed app (settings kept; roll back to undo).
    Update {
        name: String,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        settings: Vec<String>,
        #[arg(long)]
        index: Option<String>,
        #[command(flatten)]
        images: AppImageArgs,
        #[arg(long, env = "PIC_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
        docker_socket: String,
    },
    /// Remove an app (a new generation); its data and secrets are kept for a reinstall.
    Remove {
        name: String,
        /// Also delete its data and secrets: the data is first moved under backups/.
        #[arg(long)]
        purge: bool,
        #[arg(long, env = "PIC_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
        docker_socket: String,
    },
    /// For publishers: write DIR/index.json for the apps in DIR (each folder with a
    /// manifest.toml, checked first); then sign it and every manifest with minisign.
    Index { dir: PathBuf },
}

/// Where app images are built (as `pic images build` takes them).
#[derive(Debug, Clone, clap::Args)]
pub struct AppImageArgs {
    /// The image definitions (the shared base layer's).
    #[arg(long, env = "PIC_IMAGES", default_value = "images")]
    pub definitions: PathBuf,
    /// The package lock; an app's packages are recorded in it.
    #[arg(long, env = "PIC_IMAGES_LOCK", default_value = "images/packages.lock.json")]
    pub lock: PathBuf,
    /// Built layers and downloaded packages.
    #[arg(long, env = "PIC_IMAGES_CACHE", default_value = "target/images")]
    pub cache: PathBuf,
    /// Build with the packages Debian's archive has now where the lock pins others, and record
    /// them (a device, whose lock is older than the archive).
    #[arg(long = "images-update-lock", env = "PIC_IMAGES_UPDATE_LOCK")]
    pub update_lock: bool,
}

impl AppImageArgs {
    pub fn inputs(&self) -> crate::apps::ImageInputs {
        crate::apps::ImageInputs {
            definitions: self.definitions.clone(),
            lock: self.lock.clone(),
            cache: self.cache.clone(),
            update_lock: self.update_lock,
        }
    }
}

/// Where a backup's passphrase comes from: a file, or else the terminal when there is one.
#[derive(Debug, Clone, clap::Args)]
pub struct PassphraseArgs {
    /// A file whose first line is the passphrase that encrypts (or decrypts) the secrets.
    #[arg(long, env = "PIC_BACKUP_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

fn parse_level(text: &str) -> Result<pic_builder::config::LogLevel, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is not a level: use error, warn, info or debug"))
}

/// How to reach the Docker engine.
#[derive(Debug, Clone, clap::Args)]
pub struct DockerArgs {
    #[arg(long, env = "PIC_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    pub docker_socket: String,
    /// Who forwards the services' ports from the host to their containers: `docker` (its own
    /// iptables rules), `firewall` (the cell's nftables ruleset, loaded by `pic serve
    /// --firewall`, with Docker run without iptables, as on the appliance) or `none` (for
    /// machines whose ports 53 or 443 are taken, and for tests: the services stay reachable on
    /// the cell network).
    #[arg(long, env = "PIC_PUBLISH", value_enum, default_value_t = Publish::Docker)]
    pub publish: Publish,
}

/// Who forwards the services' published ports from the host to their containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Publish {
    Docker,
    Firewall,
    None,
}

#[derive(Debug, Subcommand)]
pub enum ContainersCommand {
    /// Each service's container: state, image, health.
    List {
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Start a service's container (`all`: every one).
    Start {
        service: String,
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Stop a service's container (`all`: every one); `pic activate` or `pic serve` starts it again.
    Stop {
        service: String,
        #[command(flatten)]
        docker: DockerArgs,
    },
    Restart {
        service: String,
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Remove a service's container (`all`: every one, and the cell network); data stays.
    Remove {
        service: String,
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Print a service's log (the last --tail lines; --follow keeps printing).
    Logs {
        service: String,
        #[arg(long, default_value_t = 100)]
        tail: u32,
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        docker: DockerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build the service images from `images/` (cached layers are reused) and load them into Docker.
    Build {
        /// The image definitions.
        #[arg(long, default_value = "images")]
        definitions: PathBuf,
        /// The package lock (exact versions per image).
        #[arg(long, default_value = "images/packages.lock.json")]
        lock: PathBuf,
        /// Built layers and downloaded packages.
        #[arg(long, default_value = "target/images")]
        cache: PathBuf,
        /// Accept package versions other than the locked ones and record them.
        #[arg(long)]
        update_lock: bool,
        /// Also write the images as one docker archive (for the disk image).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Do not load them into Docker.
        #[arg(long)]
        no_load: bool,
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// The images Docker has.
    List {
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Load a docker archive (`images build --output`) unless Docker has each of its images
    /// already (what the appliance does at boot).
    Load {
        archive: PathBuf,
        #[command(flatten)]
        docker: DockerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the flashable disk image (raw GPT, x86_64 UEFI) and a sha256 file beside it.
    Build {
        #[arg(long, default_value = "target/pic.img")]
        output: PathBuf,
        /// The service images as one docker archive (`pic images build --output FILE`); a private
        /// `dockerd` loads it into the Docker store the image carries (cached under `--cache`).
        #[arg(long, default_value = "target/images/images.tar")]
        service_images: PathBuf,
        #[command(flatten)]
        appliance: ApplianceArgs,
    },
}

/// What an appliance root is built from (the disk image's, or an update bundle's).
#[derive(Debug, Clone, clap::Args)]
pub struct ApplianceArgs {
    /// The image definitions (`appliance/` and the base's suite).
    #[arg(long, default_value = "images")]
    pub definitions: PathBuf,
    /// The built web UI.
    #[arg(long, default_value = "webui/dist")]
    pub webui: PathBuf,
    #[arg(long, default_value = "templates")]
    pub templates: PathBuf,
    /// The bootstrapped root file system and downloaded packages.
    #[arg(long, default_value = "target/disk-image")]
    pub cache: PathBuf,
    /// The package lock; the appliance's packages are its entry `appliance`.
    #[arg(long, default_value = "images/packages.lock.json")]
    pub lock: PathBuf,
    /// Accept package versions other than the locked ones and record them.
    #[arg(long)]
    pub update_lock: bool,
    /// The version (`IMAGE_VERSION`): dot-separated numbers, larger than every earlier build's
    /// (devices refuse updates that are not newer). By default the UTC time, YYYY.MMDD.HHMMSS.
    #[arg(long = "image-version", env = "PIC_IMAGE_VERSION")]
    pub version: Option<String>,
    /// The key update bundles are signed with (base64 Ed25519 seed; made, 0600, when missing);
    /// the image trusts its public half. Keep it out of the repository: by default
    /// ~/.config/pic/update-signing.key.
    #[arg(long, env = "PIC_UPDATE_KEY")]
    pub update_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Build a signed update bundle (`pic-<version>.picupd`): the root, kernel and initrd the disk
    /// image of that version would hold.
    Bundle {
        /// By default `target/pic-<version>.picupd`, beside the image.
        #[arg(long)]
        output: Option<PathBuf>,
        /// The oldest running version the bundle may update.
        #[arg(long, default_value = "0")]
        min_from_version: String,
        /// Added to the boot entry's kernel command line.
        #[arg(long, default_value = "")]
        cmdline_extra: String,
        #[command(flatten)]
        appliance: ApplianceArgs,
    },
    /// Sign a root, kernel and initrd built elsewhere into a bundle.
    Pack {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: PathBuf,
        /// The kernel command line of its boot entry, without `root=`.
        #[arg(long)]
        cmdline: String,
        #[arg(long = "image-version")]
        version: String,
        #[arg(long, default_value = "0")]
        min_from_version: String,
        /// As for `bundle`.
        #[arg(long, env = "PIC_UPDATE_KEY")]
        update_key: Option<PathBuf>,
        #[arg(long)]
        output: PathBuf,
    },
    /// Check a bundle and write it into the inactive slot; the device boots it, on trial, at its
    /// next start (`systemctl reboot`). Refusals write nothing.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// The slots: which version each holds, good, on trial or bad, which one booted, and the
    /// versions this device fell back from.
    Status {
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// The boot check of a version on trial (pic-boot-check.service): waits for Docker, the API
    /// and the current generation; exits 1 saying what failed.
    Check {
        /// Seconds to wait for everything to come up.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Where `pic serve` answers.
        #[arg(long, default_value = "127.0.0.1:3000")]
        api: std::net::SocketAddr,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

/// Where a device's slots, command line and trusted key are (their places on the appliance by
/// default).
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    #[arg(long, env = "PIC_UPDATE_LAYOUT", default_value = pic_builder::update::slots::LAYOUT)]
    pub layout: PathBuf,
    #[arg(long, env = "PIC_UPDATE_CMDLINE", default_value = "/proc/cmdline")]
    pub kernel_cmdline: PathBuf,
    #[arg(long, env = "PIC_UPDATE_TRUSTED_KEY", default_value = pic_builder::update::slots::TRUSTED_KEY)]
    pub trusted_key: PathBuf,
}

impl DeviceArgs {
    /// The appliance's places, as `pic serve` reads them (the same variables move them, so
    /// that a device made of files can stand in for one).
    pub fn appliance() -> DeviceArgs {
        let place =
            |variable: &str, default: &str| std::env::var_os(variable).map_or_else(|| default.into(), PathBuf::from);
        DeviceArgs {
            layout: place("PIC_UPDATE_LAYOUT", pic_builder::update::slots::LAYOUT),
            kernel_cmdline: place("PIC_UPDATE_CMDLINE", "/proc/cmdline"),
            trusted_key: place("PIC_UPDATE_TRUSTED_KEY", pic_builder::update::slots::TRUSTED_KEY),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminPasswordCommand {
    /// Name the admins and say whether each has a password (passwords are kept only as hashes).
    Show,
    /// Give an admin (the first one, or --user) a new random password and print it once.
    Reset {
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List the users, their roles and whether they have a password.
    List,
    /// Add a user (the password is read from standard input) and switch to the new generation.
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "peer")]
        role: RoleArg,
    },
    /// Set a user's password (read from standard input).
    Passwd { name: String },
    /// Remove a user and switch to the new generation; refused while something still names them.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// List the peers.
    List,
    /// Add a peer and switch to the new generation.
    Add {
        name: String,
        /// The device's public key; without it the cell makes a key pair (see `pic peer config`).
        #[arg(long)]
        public_key: Option<String>,
        /// Its VPN address; without it the next free one.
        #[arg(long)]
        address: Option<std::net::Ipv4Addr>,
        /// `full` sends all of the device's traffic through the cell.
        #[arg(long, value_enum)]
        routing: Option<RoutingArg>,
        /// The user who owns the device.
        #[arg(long)]
        user: Option<String>,
        /// The services it may reach, comma-separated (e.g. `dns,calendar,mail`); all without it.
        #[arg(long, value_delimiter = ',')]
        access: Option<Vec<String>>,
        /// The exit its internet traffic leaves through (needs `--routing full`).
        #[arg(long)]
        exit: Option<String>,
    },
    /// Send a device's internet traffic through an exit (`pic exit list`), or with `--none`
    /// through the cell's own uplink again.
    Exit {
        name: String,
        #[arg(conflicts_with = "none", required_unless_present = "none")]
        exit: Option<String>,
        #[arg(long)]
        none: bool,
    },
    /// Set which services a device may reach through the VPN and switch to the new generation; the
    /// firewall refuses the others, and the proxy answers their sites with a page saying why.
    Access {
        name: String,
        /// Service names, e.g. `dns calendar mail`; none: only the web UI.
        #[arg(conflicts_with = "all")]
        services: Vec<String>,
        /// Every service (no list).
        #[arg(long)]
        all: bool,
    },
    /// Remove a peer and switch to the new generation.
    Remove { name: String },
    /// The routes: each peer's address on the VPN and what its device sends through the cell.
    Routes,
    /// Print the peer's wg-quick file (with --qr, as a QR code for the WireGuard app).
    Config {
        name: String,
        #[arg(long)]
        qr: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireGuardBackend {
    Kernel,
    Userspace,
    Off,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoutingArg {
    Split,
    Full,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Peer,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// List every certificate issued, with its serial and state.
    List,
    /// Issue a certificate for NAME (kept in secrets/tls/NAME/), replacing the current one.
    Issue {
        name: String,
        /// Further names the certificate covers.
        #[arg(long = "also")]
        also: Vec<String>,
    },
    /// Revoke a certificate by serial; the CRL is rewritten and the next build issues a new one.
    Revoke { serial: String },
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Print the bearer token a scraper sends (`Authorization: Bearer …`), made the first time.
    Token,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the CA certificate (PEM) for clients to trust.
    Export,
}
