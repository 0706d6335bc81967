//! A QEMU test driver in the spirit of NixOS's: boot the appliance's disk image, watch its serial
//! console, run commands as root through a test agent on a virtio console, reach its ports
//! through QEMU's user-network forwards, shut it down or cut its power. Every step is logged
//! with its time; a failing step prints the console's tail.
//!
//! KVM is not assumed: QEMU runs with TCG, and the timeouts callers pass allow for it.

pub mod cell;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// UEFI firmware from Debian's `ovmf`.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How a machine is started.
pub struct Options {
    /// The disk's size as the guest sees it (the data partition grows into it); `None`: the
    /// image's own size, as when it is written to a disk no bigger than itself.
    pub disk_gib: Option<u32>,
    /// Whether the network cable is plugged in at power-on (`set_link` changes it later).
    pub link_up: bool,
    pub memory_mib: u32,
    /// Guest TCP ports reachable from the host at 127.0.0.1:<host port>. (TCP only: with
    /// `restrict=on` QEMU's user network drops every UDP packet the guest sends but DHCP's.)
    pub forwards: Vec<(u16, u16)>,
    /// System credentials passed to the guest's systemd (name, value), besides the test agent's.
    pub credentials: Vec<(String, String)>,
    /// Files attached as read-only raw disks after the main one (`/dev/vdb`, ...).
    pub drives: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            disk_gib: Some(8),
            link_up: true,
            memory_mib: 2048,
            forwards: Vec::new(),
            credentials: Vec::new(),
            drives: Vec::new(),
        }
    }
}

/// One running (or stopped) virtual machine and its disk.
pub struct Machine {
    name: String,
    dir: PathBuf,
    disk: PathBuf,
    qemu: Option<Child>,
    agent: Option<BufReader<UnixStream>>,
    options: Options,
    started: Instant,
    /// Console bytes already seen by `wait_for_console` in this boot.
    console_seen: usize,
    /// Boots power-cycled because the kernel panicked before anything of the image ran.
    early_panics: u32,
    log: Vec<String>,
}

impl Machine {
    /// Copies nothing: the image is the backing file of a qcow2 overlay in `dir`, so the image
    /// itself is never written and the guest sees a disk of `options.disk_gib` (or the image's size).
    pub fn create(name: &str, image: &Path, dir: &Path, options: Options) -> Result<Machine> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let disk = dir.join(format!("{name}.qcow2"));
        let image = image.canonicalize().with_context(|| format!("{} (make image)", image.display()))?;
        let mut create = Command::new("qemu-img");
        create.args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"]).arg(&image).arg(&disk);
        if let Some(gib) = options.disk_gib {
            create.arg(format!("{gib}G"));
        }
        run(&mut create)?;
        std::fs::copy(OVMF_VARS, dir.join(format!("{name}-vars.fd")))
            .context("copying the UEFI variables (apt install ovmf)")?;
        Ok(Machine {
            name: name.to_owned(),
            dir: dir.to_owned(),
            disk,
            qemu: None,
            agent: None,
            options,
            started: Instant::now(),
            console_seen: 0,
            early_panics: 0,
            log: Vec::new(),
        })
    }

    /// Creates the machine and starts it.
    pub fn boot(name: &str, image: &Path, dir: &Path, options: Options) -> Result<Machine> {
        let mut machine = Machine::create(name, image, dir, options)?;
        machine.start()?;
        Ok(machine)
    }

    fn console_path(&self) -> PathBuf {
        self.dir.join(format!("{}-console.log", self.name))
    }

    fn monitor_path(&self) -> PathBuf {
        self.dir.join(format!("{}-monitor.sock", self.name))
    }

    fn agent_path(&self) -> PathBuf {
        self.dir.join(format!("{}-agent.sock", self.name))
    }

    /// Powers the machine on (again, after `shutdown` or `crash`: same disk).
    pub fn start(&mut self) -> Result<()> {
        self.step(&format!("start {}", self.name));
        let _ = std::fs::remove_file(self.agent_path());
        let _ = std::fs::remove_file(self.console_path());
        let _ = std::fs::remove_file(self.monitor_path());
        // restrict=on: the guest reaches nothing outside (the forwards below still work).
        let mut netdev = String::from("user,id=net0,restrict=on");
        for (guest, host) in &self.options.forwards {
            let _ = write!(netdev, ",hostfwd=tcp:127.0.0.1:{host}-:{guest}");
        }
        let vars = self.dir.join(format!("{}-vars.fd", self.name));
        let mut qemu = Command::new("qemu-system-x86_64");
        for (name, value) in &self.options.credentials {
            qemu.args(["-smbios", &format!("type=11,value=io.systemd.credential:{name}={value}")]);
        }
        qemu.args(["-accel", "tcg", "-machine", "q35", "-smp", "2", "-m", &self.options.memory_mib.to_string()])
            .args(["-display", "none", "-no-user-config", "-nodefaults"])
            // A restart the guest makes ends this QEMU: every boot is a fresh process on the
            // same disk, from the firmware on, as a real machine's power-on.
            .arg("-no-reboot")
            .args(["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")])
            .args(["-drive", &format!("if=pflash,format=raw,unit=1,file={}", vars.display())])
            .args(["-drive", &format!("if=virtio,format=qcow2,file={}", self.disk.display())]);
        // After the machine's own disk, which stays /dev/vda.
        for drive in &self.options.drives {
            qemu.args(["-drive", &format!("if=virtio,format=raw,readonly=on,file={}", drive.display())]);
        }
        let child = qemu
            .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0,id=nic0"])
            .args(["-monitor", &format!("unix:{},server=on,wait=off", self.monitor_path().display())])
            // Paused until the cable is set as asked: QEMU has no option to start with it out.
            .arg("-S")
            .args(["-serial", &format!("file:{}", self.console_path().display())])
            .args(["-chardev", &format!("socket,id=agent,path={},server=on,wait=off", self.agent_path().display())])
            .args(["-device", "virtio-serial-pci", "-device", "virtconsole,chardev=agent"])
            // The credential that starts the test agent; nothing else ever passes it.
            .args(["-smbios", "type=11,value=io.systemd.credential:pic.test-agent=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64 (apt install qemu-system-x86 ovmf)")?;
        self.qemu = Some(child);
        self.agent = None;
        self.console_seen = 0;
        if !self.options.link_up {
            self.monitor("set_link nic0 off")?;
        }
        self.monitor("cont")?;
        self.started = Instant::now();
        Ok(())
    }

    /// Plugs the network cable in or pulls it out.
    pub fn set_link(&mut self, up: bool) -> Result<()> {
        self.step(&format!("network cable {}", if up { "in" } else { "out" }));
        self.monitor(&format!("set_link nic0 {}", if up { "on" } else { "off" })).map(drop)
    }

    /// Runs one command of QEMU's human monitor and returns what it printed.
    fn monitor(&mut self, command: &str) -> Result<String> {
        let path = self.monitor_path();
        // QEMU makes the socket as it starts; give it the time a busy machine takes to exec.
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("connecting to QEMU's monitor at {}", path.display()));
                }
                Err(_) => {
                    self.check_running()?;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream);
        let prompt = |reader: &mut BufReader<UnixStream>| -> Result<String> {
            let mut seen = Vec::new();
            while !seen.ends_with(b"(qemu) ") {
                let mut byte = [0u8; 1];
                reader.read_exact(&mut byte).context("reading QEMU's monitor")?;
                seen.push(byte[0]);
            }
            Ok(String::from_utf8_lossy(&seen).into_owned())
        };
        prompt(&mut reader)?;
        reader.get_mut().write_all(format!("{command}\n").as_bytes())?;
        let answer = prompt(&mut reader)?;
        if answer.contains("Error") || answer.contains("unknown command") {
            bail!("QEMU's monitor refused {command:?}: {answer}");
        }
        Ok(answer)
    }

    /// The whole console output of this boot.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.console_path()).unwrap_or_default()).into_owned()
    }

    /// The console's last lines, for failures.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = self.console();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the console shows a line matching `pattern` (after what earlier waits saw);
    /// returns the match.
    pub fn wait_for_console(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        self.step(&format!("wait for console /{pattern}/"));
        let regex = regex::Regex::new(pattern).context("the console pattern")?;
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if let Some(found) = regex.find(&text[self.console_seen.min(text.len())..]) {
                let matched = found.as_str().to_owned();
                self.console_seen += found.end();
                return Ok(matched);
            }
            self.check_running()?;
            if Instant::now() > deadline {
                return self.fail_step(&format!("no console line matched /{pattern}/ within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs `command` as root in the guest (sh -c) and returns its exit code and output.
    pub fn execute(&mut self, command: &str) -> Result<(i32, String)> {
        self.connect_agent(Duration::from_secs(300))?;
        let agent = self.agent.as_mut().expect("connected");
        let marker = format!("__pic_done_{}__", nonce());
        // Base64 keeps quotes and newlines of the command out of the shell's way.
        let encoded = base64(command.as_bytes());
        // The marker is split in the command line, so that a terminal echoing the line back
        // never shows it whole: only the shell's answer does.
        let (head, tail) = marker.split_at(8);
        let line = format!("echo {encoded} | base64 -d | sh 2>&1; rc=$?; echo; echo {head}''{tail} $rc\n");
        agent.get_mut().write_all(line.as_bytes()).context("writing to the test agent")?;
        let mut output = String::new();
        loop {
            let mut line = String::new();
            if agent.read_line(&mut line).context("reading from the test agent")? == 0 {
                bail!("the test agent closed while running {command:?}");
            }
            if let Some(code) = line.trim_end().strip_prefix(&format!("{marker} ")) {
                let code = code.parse().unwrap_or(-1);
                // The `echo` before the marker ends a last line without a newline.
                if output.ends_with('\n') {
                    output.pop();
                }
                return Ok((code, output));
            }
            // A terminal that still maps newlines adds carriage returns.
            output.push_str(&line.replace('\r', ""));
        }
    }

    /// Runs `command`; fails (with its output and the console's tail) unless it exits 0.
    pub fn succeed(&mut self, command: &str) -> Result<String> {
        self.step(&format!("succeed: {command}"));
        let (code, output) = self.execute(command)?;
        if code != 0 {
            return self.fail_step(&format!("`{command}` exited {code}:\n{output}"));
        }
        Ok(output)
    }

    /// Runs `command`; fails unless it exits non-zero.
    pub fn fail(&mut self, command: &str) -> Result<String> {
        self.step(&format!("fail: {command}"));
        let (code, output) = self.execute(command)?;
        if code == 0 {
            return self.fail_step(&format!("`{command}` succeeded, and should not have:\n{output}"));
        }
        Ok(output)
    }

    /// Retries `command` every second until it succeeds.
    pub fn wait_until_succeeds(&mut self, command: &str, timeout: Duration) -> Result<String> {
        self.step(&format!("wait until succeeds: {command}"));
        let deadline = Instant::now() + timeout;
        loop {
            let (code, output) = self.execute(command)?;
            if code == 0 {
                return Ok(output);
            }
            if Instant::now() > deadline {
                return self
                    .fail_step(&format!("`{command}` did not succeed within {timeout:?}; last output:\n{output}"));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits until a systemd unit is active; fails at once when it has failed.
    pub fn wait_for_unit(&mut self, unit: &str, timeout: Duration) -> Result<()> {
        self.step(&format!("wait for unit {unit}"));
        let deadline = Instant::now() + timeout;
        loop {
            let (_, state) = self.execute(&format!("systemctl is-active {unit}"))?;
            match state.trim() {
                "active" => return Ok(()),
                "failed" => {
                    let (_, status) = self.execute(&format!(
                        "systemctl status --no-pager -l {unit}; journalctl -b -u {unit} --no-pager | tail -n 30"
                    ))?;
                    return self.fail_step(&format!("unit {unit} failed:\n{status}"));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return self.fail_step(&format!("unit {unit} not active within {timeout:?} (it is {})", state.trim()));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits until something in the guest listens on TCP `port`.
    pub fn wait_for_open_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        self.wait_until_succeeds(&format!("ss -Htln 'sport = :{port}' | grep -q LISTEN"), timeout).map(drop)
    }

    /// An HTTP request to a forwarded guest port from the host (port 443 spoken over HTTPS, the
    /// certificate not checked): (status, body). Cookies are kept between requests (a session,
    /// as a browser has), and a request may take as long as the activation it triggers.
    pub fn http(
        &mut self,
        method: &str,
        guest_port: u16,
        path: &str,
        body: Option<&str>,
        headers: &[&str],
    ) -> Result<(u16, String)> {
        self.curl(scheme(guest_port), method, guest_port, path, body, headers, Duration::from_secs(900))
    }

    /// A GET over HTTPS through a forward; the certificate is not checked (before setup it is
    /// the setup proxy's own, after it the cell CA's).
    pub fn https(&mut self, guest_port: u16, path: &str) -> Result<(u16, String)> {
        self.curl("https", "GET", guest_port, path, None, &[], Duration::from_secs(120))
    }

    /// The response headers of a GET through a forward (with the session's cookies).
    pub fn http_headers(&mut self, guest_port: u16, path: &str) -> Result<String> {
        let host = self.forwarded(guest_port)?;
        self.step(&format!("http HEADERS :{guest_port}{path}"));
        let jar = self.dir.join(format!("{}-cookies", self.name));
        let output = Command::new("curl")
            .args(["-sS", "-k", "--max-time", "60", "-o", "/dev/null", "-D", "-"])
            .arg("-b")
            .arg(&jar)
            .arg(format!("{}://127.0.0.1:{host}{path}", scheme(guest_port)))
            .output()
            .context("running curl")?;
        if !output.status.success() {
            bail!("GET {path}: curl {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    #[allow(clippy::too_many_arguments)]
    fn curl(
        &mut self,
        scheme: &str,
        method: &str,
        guest_port: u16,
        path: &str,
        body: Option<&str>,
        headers: &[&str],
        limit: Duration,
    ) -> Result<(u16, String)> {
        let host = self.forwarded(guest_port)?;
        self.step(&format!("{scheme} {method} :{guest_port}{path}"));
        let url = format!("{scheme}://127.0.0.1:{host}{path}");
        let jar = self.dir.join(format!("{}-cookies", self.name));
        let mut curl = Command::new("curl");
        curl.args(["-sS", "-k", "--max-time", &limit.as_secs().to_string(), "-w", "\n%{http_code}", "-X", method]);
        curl.arg("-b").arg(&jar).arg("-c").arg(&jar);
        for header in headers {
            curl.args(["-H", header]);
        }
        if let Some(body) = body {
            curl.args(["-H", "content-type: application/json", "--data", body]);
        }
        let output = curl.arg(&url).output().context("running curl")?;
        if !output.status.success() {
            bail!("{method} {url}: curl {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// One GET through the forward, without a session and without a line in the step log (for
    /// polling): (status, body), or why nothing answered.
    pub fn get_quietly(&self, guest_port: u16, path: &str, limit: Duration) -> Result<(u16, String)> {
        let host = self.forwarded(guest_port)?;
        let output = Command::new("curl")
            .args(["-sS", "-k", "--max-time", &limit.as_secs().max(1).to_string(), "-w", "\n%{http_code}"])
            .arg(format!("{}://127.0.0.1:{host}{path}", scheme(guest_port)))
            .output()
            .context("running curl")?;
        if !output.status.success() {
            bail!("curl {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// Records a step in the log (a test's own milestones).
    pub fn note(&mut self, what: &str) {
        self.step(what);
    }

    /// Retries a GET through the forward until the guest answers it (any status).
    pub fn wait_for_http(&mut self, guest_port: u16, path: &str, timeout: Duration) -> Result<(u16, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.curl(scheme(guest_port), "GET", guest_port, path, None, &[], Duration::from_secs(20)) {
                Ok(answer) => return Ok(answer),
                Err(e) if Instant::now() > deadline => return self.fail_step(&format!("{e:#}")),
                Err(e) => self.step(&format!("not yet: {e:#}")),
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Asks the guest's DNS for `name`'s A records, as `dig +short` prints them: over TCP, through
    /// the forward of port 53.
    pub fn dig(&mut self, name: &str) -> Result<String> {
        let host = self.forwarded(53)?;
        self.step(&format!("dig {name}"));
        let output = Command::new("dig")
            .args(["@127.0.0.1", "-p", &host.to_string(), name, "A", "+tcp", "+short", "+time=10", "+tries=2"])
            .output()
            .context("running dig (apt install bind9-dnsutils)")?;
        if !output.status.success() {
            return self.fail_step(&format!("dig {name}: {}", String::from_utf8_lossy(&output.stdout).trim()));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The host port forwarded to `guest_port`.
    pub fn forwarded(&self, guest_port: u16) -> Result<u16> {
        self.options
            .forwards
            .iter()
            .find(|(guest, _)| *guest == guest_port)
            .map(|(_, host)| *host)
            .with_context(|| format!("guest port {guest_port} is not forwarded"))
    }

    /// Powers off cleanly and waits for QEMU to exit.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        self.step("shutdown");
        // The agent may not have been asked anything in this boot yet.
        self.connect_agent(timeout)?;
        if let Some(agent) = self.agent.as_mut() {
            let _ = agent.get_mut().write_all(b"systemctl poweroff\n");
        }
        self.agent = None;
        self.wait_for_exit(timeout)
    }

    /// Shuts down cleanly and boots again from the same disk.
    pub fn reboot(&mut self, timeout: Duration) -> Result<()> {
        self.shutdown(timeout)?;
        self.start()
    }

    /// Waits for the guest to restart or power off by itself (QEMU runs with `-no-reboot`, so
    /// either ends the process); `start` powers it on again.
    pub fn wait_for_power_off(&mut self, timeout: Duration) -> Result<()> {
        self.step("waiting for the machine to restart by itself");
        self.agent = None;
        self.wait_for_exit(timeout)
    }

    /// Whether QEMU still runs.
    pub fn running(&mut self) -> bool {
        self.qemu.as_mut().is_some_and(|q| q.try_wait().ok().flatten().is_none())
    }

    /// SHA-256 of byte ranges (offset, length) of the disk as the guest sees it, read from the
    /// host (QEMU may be running: its writes that reached the disk file are what is read). A
    /// negative offset counts from the disk's end (the backup GPT is its last sectors).
    pub fn disk_hashes(&mut self, ranges: &[(i64, u64)]) -> Result<Vec<String>> {
        use sha2::Digest;
        let raw = self.dir.join(format!("{}-disk.raw", self.name));
        run(Command::new("qemu-img").args(["convert", "-U", "-f", "qcow2", "-O", "raw"]).arg(&self.disk).arg(&raw))?;
        let mut file = std::fs::File::open(&raw)?;
        let size = file.metadata()?.len();
        let mut hashes = Vec::new();
        for (offset, length) in ranges {
            let offset = if *offset < 0 { size - offset.unsigned_abs() } else { *offset as u64 };
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
            let mut bytes = vec![0u8; *length as usize];
            file.read_exact(&mut bytes)?;
            hashes.push(hex(&sha2::Sha256::digest(&bytes)));
        }
        std::fs::remove_file(&raw)?;
        Ok(hashes)
    }

    /// Sends a file as the body of a POST through a forward (with the session's cookies).
    pub fn upload(&mut self, guest_port: u16, path: &str, file: &Path, headers: &[&str]) -> Result<(u16, String)> {
        let host = self.forwarded(guest_port)?;
        self.step(&format!("http POST :{guest_port}{path} < {}", file.display()));
        let jar = self.dir.join(format!("{}-cookies", self.name));
        let mut curl = Command::new("curl");
        curl.args(["-sS", "-k", "--max-time", "1800", "-w", "\n%{http_code}", "-X", "POST"]);
        curl.arg("-b").arg(&jar).arg("-c").arg(&jar);
        for header in headers {
            curl.args(["-H", header]);
        }
        // Streamed from the file (`--data-binary @` would read it into memory first).
        curl.args(["-H", "content-type: application/octet-stream", "-T"]).arg(file);
        let output =
            curl.arg(format!("{}://127.0.0.1:{host}{path}", scheme(guest_port))).output().context("running curl")?;
        if !output.status.success() {
            bail!("POST {path}: curl {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// Cuts the power: QEMU is killed, whatever the guest was doing.
    pub fn crash(&mut self) -> Result<()> {
        self.step("crash (power cut)");
        self.agent = None;
        if let Some(mut qemu) = self.qemu.take() {
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
        Ok(())
    }

    /// Seconds since this boot started.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while let Some(qemu) = self.qemu.as_mut() {
            if qemu.try_wait()?.is_some() {
                self.qemu = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                return self.fail_step(&format!("the machine did not power off within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }

    /// Connects to the agent's socket and waits until the guest's shell answers.
    fn connect_agent(&mut self, timeout: Duration) -> Result<()> {
        if self.agent.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(self.agent_path()) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(e).context("connecting to QEMU's agent socket"),
            }
        };
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut reader = BufReader::new(stream);
        let ready = format!("__pic_ready_{}__", nonce());
        let (head, tail) = ready.split_at(8);
        let mut seen = String::new();
        let mut last_probe = Instant::now() - Duration::from_secs(10);
        // The agent starts late in boot; until then what is written is lost, so ask again.
        while !seen.contains(&ready) {
            self.check_running()?;
            if Instant::now() > deadline {
                return self.fail_step("the test agent did not answer (is pic-test-agent.service in the image?)");
            }
            if last_probe.elapsed() > Duration::from_secs(2) {
                reader.get_mut().write_all(format!("echo {head}''{tail}\n").as_bytes())?;
                last_probe = Instant::now();
            }
            let mut buffer = [0u8; 4096];
            match reader.read(&mut buffer) {
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("reading from the test agent"),
            }
        }
        // Drain the answers to earlier probes, then block for commands.
        std::thread::sleep(Duration::from_millis(300));
        let mut buffer = [0u8; 4096];
        while reader.read(&mut buffer).map(|n| n > 0).unwrap_or(false) {}
        reader.get_ref().set_read_timeout(Some(Duration::from_secs(600)))?;
        self.step(&format!("test agent ready after {:.1} s", self.uptime()));
        self.agent = Some(reader);
        Ok(())
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(qemu) = self.qemu.as_mut()
            && let Some(status) = qemu.try_wait()?
        {
            let mut stderr = String::new();
            if let Some(mut pipe) = qemu.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            self.qemu = None;
            return self.fail_step(&format!("QEMU exited ({status}): {stderr}"));
        }
        // A guest whose kernel panicked never answers again: say so now, not at the timeout.
        let console = self.console();
        if console.contains("Kernel panic - not syncing") {
            // In its own initialisation, before the image's first program ran, the kernel under
            // TCG here has panicked now and then (sched_clock, in an interrupt) on a boot that
            // passed a moment before: power-cycle that once, and say so; anything later is the
            // image's to answer for.
            let in_kernel_init =
                !console.contains("Run /init as init process") && !console.contains("Freeing unused kernel");
            if in_kernel_init && self.early_panics == 0 {
                self.early_panics += 1;
                self.step("the kernel panicked in its own initialisation, before the image ran: power-cycling once");
                if let Some(mut qemu) = self.qemu.take() {
                    let _ = qemu.kill();
                    let _ = qemu.wait();
                }
                self.agent = None;
                self.console_seen = 0;
                return self.start();
            }
            return self.fail_step("the guest's kernel panicked");
        }
        Ok(())
    }

    /// Fails at once when QEMU exited or the guest's kernel panicked (for a caller's own waits).
    pub fn check_alive(&mut self) -> Result<()> {
        self.check_running()
    }

    fn step(&mut self, what: &str) {
        let line = format!("[{:>7.1}s] {}: {what}", self.started.elapsed().as_secs_f64(), self.name);
        eprintln!("{line}");
        self.log.push(line);
    }

    /// Fails the current step with the console's tail.
    fn fail_step<T>(&mut self, why: &str) -> Result<T> {
        bail!("{}: {why}\n--- console (last 60 lines) ---\n{}", self.name, self.console_tail(60))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut qemu) = self.qemu.take() {
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
    }
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

fn nonce() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How the cell speaks on a guest port: HTTPS on 443, HTTP elsewhere.
fn scheme(guest_port: u16) -> &'static str {
    if guest_port == 443 { "https" } else { "http" }
}
