//! Tier 3: the whole cell in a real Docker engine. The service images are built from Debian
//! packages (`pic images build`), `pic serve` activates the example cell, and real clients talk
//! to the running containers: dig, curl over HTTPS/SMTP/IMAPS/CalDAV/WebDAV, an SNTP request,
//! busybox's DHCP client. Then changes: a peer (no container recreated), a DNS upstream (only DNS
//! touched), a rollback, a generation whose service never becomes healthy (rolled back by itself
//! while the others keep serving), a container killed from outside (restarted by the monitor).
//!
//! Needs root and a Docker engine at /var/run/docker.sock (`.ci/run` starts one). One test: the
//! cell's network and container names are the machine's, so scenarios run one after another.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::docker::*;
use common::fake_http::Fake;
use common::pebble::{CLOUDFLARE_TOKEN, Pebble, cloudflare};
use serde_json::json;

#[test]
fn the_cell_runs_in_docker_and_real_clients_use_it() {
    common::build_images();
    let mut cell = start_cell();
    let started = Instant::now();
    cell.wait_all_healthy("every service is healthy");
    eprintln!(
        "first activation: every service healthy {:.1} s after pic serve answered",
        started.elapsed().as_secs_f64()
    );

    // Least privilege, as the specs say.
    let dns = ok(
        "docker",
        &["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.Config.User}}", "pic-dns"],
    );
    assert_eq!(dns.trim(), "true [ALL] unbound");

    // The upstream resolver the cell forwards to: dnsmasq on the host's cell address.
    cell.upstream = Some(
        Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--port=53"])
            .args([&format!("--listen-address={GATEWAY}"), "--address=/upstream.example.org/192.0.2.7", "--pid-file="])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // DNS: peers and services resolve; other names are forwarded.
    assert_eq!(dig("alice-laptop.home.cell"), "10.8.0.2");
    assert_eq!(dig("calendar.home.cell"), PROXY);
    assert_eq!(dig("dns.home.cell"), DNS);
    // dnsmasq starts listening within a second; each dig waits 2 s for its answer.
    wait_for(
        "a forwarded name resolves",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || dig("upstream.example.org"),
        |answer| answer == "192.0.2.7",
    );

    // HTTPS through caddy, the certificate verified with the cell CA.
    let (code, _) = cell.https_status("calendar.home.cell", &["https://calendar.home.cell/.web/"]);
    assert_eq!(code, 200);
    let strict = cell.https(
        "calendar.home.cell",
        &["--cacert", "/etc/ssl/certs/ca-certificates.crt", "https://calendar.home.cell/"],
    );
    assert!(!strict.status.success(), "a certificate not from the cell CA must not verify");

    mail(&cell);
    calendar(&cell);
    files(&cell);
    access_lists(&cell);

    // NTP: an SNTP request gets a server reply.
    let sntp = "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); \
                s.sendto(b'\\x23'+b'\\0'*47,(sys.argv[1],123)); d=s.recv(68); sys.exit(0 if d[0]&7==4 else 1)";
    ok("python3", &["-c", sntp, NTP]);

    // DHCP: a client on the cell network gets a lease from the range (udhcpc reports on stderr).
    let client = run(
        "docker",
        &[
            "run",
            "--rm",
            "--network",
            "cell-network",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "NET_RAW",
            "pic/client:latest",
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-s",
            "/usr/bin/true",
        ],
    );
    let report = String::from_utf8_lossy(&client.stderr).into_owned();
    assert!(client.status.success(), "udhcpc: {report}");
    let leased = report.lines().find_map(|l| l.split("lease of ").nth(1)?.split_whitespace().next());
    let leased: std::net::Ipv4Addr = leased.unwrap_or_else(|| panic!("no lease: {report}")).parse().unwrap();
    assert!((100..=200).contains(&leased.octets()[3]), "{leased} is outside the range");

    changes(&cell);
    logs_and_verbosity(&cell);
    health_gate(&cell);
    container_manager(&cell);
    exit_container(&cell);
    monitor(&cell);
    stop_means_stop(&mut cell);
    quiet_requests(&cell);
    backup_wipe_restore(&mut cell);
    public_certificates(&cell);
}

/// The web UI (its stand-in here) at the LAN address the console shows: HTTPS with the cell CA's
/// certificate naming that address (a browser sends no server name for an address), and plain
/// HTTP only redirects.
fn lan_address(cell: &Running) {
    let status = cell.api_json("GET", "/api/setup/status", None);
    let address =
        status["device"]["network"]["addresses"][0].as_str().unwrap_or_else(|| panic!("no LAN address: {status}"));
    // To the proxy's address as if it were the device's, as a published port takes it there.
    let to_proxy = format!("{address}:443:{PROXY}:443");
    let ca = cell.ca.to_str().unwrap();
    let url = format!("https://{address}/");
    let out = run(
        "curl",
        &["-s", "--max-time", "10", "--cacert", ca, "--connect-to", &to_proxy, "-w", "\n%{http_code}", &url],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "HTTPS at {address}: {} {text}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text, "the web UI\n200", "HTTPS at {address}");
    let to_proxy = format!("{address}:80:{PROXY}:80");
    let plain = format!("http://{address}/login");
    let out = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            "--connect-to",
            &to_proxy,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &plain,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("308 https://{address}/login"));
    // The cell's list of certificates shows it, for the addresses.
    let certificates = cell.api_json("GET", "/api/certs", None);
    let lan = certificates.as_array().unwrap().iter().filter(|c| c["name"] == "lan" && c["revoked"].is_null());
    assert!(lan.into_iter().any(|c| c["subject_alt_names"] == json!([address])), "{certificates}");
}

/// Caddy gets a certificate from Pebble by HTTP-01 for each public name (Pebble's DNS points them
/// at the proxy), mail is handed the one for its name; then in ddns mode with Cloudflare
/// `pic serve` gets one for the name and `*.name` by DNS-01 (the fake Cloudflare puts the TXT
/// records into Pebble's DNS), and Caddy and mail serve it. Real clients check each with
/// Pebble's root: curl through the proxy, openssl on IMAPS (993) and submission (587, STARTTLS).
fn public_certificates(cell: &Running) {
    // Caddy asks for five certificates at once; each takes Pebble ~1 s to check and sign here,
    // with a retry after each nonce Pebble rejects (5%).
    const ISSUANCE: Duration = Duration::from_secs(90);
    let pebble = Pebble::start(GATEWAY, Some(80), PROXY);
    let root = cell.cell.dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.issuing_root()).unwrap();
    let root = root.to_str().unwrap();
    let domain = json!({"mode": "public", "name": "cell.example.org", "acme_email": "owner@example.org",
        "acme_ca": pebble.directory, "acme_ca_root": pebble.listener_root});
    cell.change_config(|c| c["cell"]["domain"] = domain);
    let https = |host: &str| {
        let resolve = format!("{host}:443:{PROXY}");
        let url = format!("https://{host}/health");
        let out = run("curl", &["-sS", "-v", "--max-time", "10", "--cacert", root, "--resolve", &resolve, &url]);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let served = |answer: &(bool, String)| answer.0;
    wait_for(
        "Caddy serves a certificate from Pebble",
        limit_with(ISSUANCE),
        Duration::from_secs(1),
        || https("pic.cell.example.org"),
        served,
    );
    let certificate = |port: &str, starttls: bool| {
        let connect = format!("{MAIL}:{port}");
        let mut args = vec!["s_client", "-connect", &connect, "-servername", "mail.cell.example.org", "-CAfile", root];
        if starttls {
            args.extend(["-starttls", "smtp"]);
        }
        let out = Command::new("openssl").args(&args).stdin(Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pem = text
            .split_once("-----BEGIN CERTIFICATE-----")
            .and_then(|(_, rest)| rest.split_once("-----END CERTIFICATE-----"))
            .map(|(body, _)| format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n"));
        let names = pem.map(|pem| x509_names(&pem)).unwrap_or_default();
        (text.contains("Verify return code: 0 (ok)"), names)
    };
    // The monitor hands mail the certificate Caddy got for mail's name and reloads it.
    for (port, starttls) in [("993", false), ("587", true)] {
        wait_for(
            &format!("mail serves the certificate Caddy got on {port}"),
            limit_with(monitor_limit()),
            Duration::from_secs(1),
            || certificate(port, starttls),
            |(verified, names)| *verified && names == "DNS:mail.cell.example.org",
        );
    }
    // Caddy gets its names' certificates one after another: the list fills within the same time.
    let listed = wait_for(
        "the domain lists Caddy's certificate for each of its names",
        limit_with(monitor_limit()),
        Duration::from_secs(1),
        || cell.api_json("GET", "/api/domain", None),
        |listed| listed["certificates"].as_array().is_some_and(|c| c.len() >= 5),
    );
    assert_eq!(listed["certificates_by"], "caddy", "{listed}");

    // DNS-01 through pic serve, with the provider's credential set through the API.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let provider =
        runtime.block_on(Fake::start(cloudflare(pebble.dns_management.clone(), Arc::new(AtomicBool::new(true)))));
    let domain = json!({"mode": "ddns", "provider": "cloudflare", "name": "cell.example.org", "server": provider.url(),
        "address": {"from": "interface", "name": "lo"}, "acme_email": "owner@example.org",
        "acme_ca": pebble.directory, "acme_ca_root": pebble.listener_root});
    cell.change_config(|c| c["cell"]["domain"] = domain);
    cell.api_json("PUT", "/api/domain/credential", Some(&json!({"credential": CLOUDFLARE_TOKEN})));
    wait_for(
        "Caddy serves pic serve's wildcard certificate",
        limit_with(ISSUANCE + monitor_limit()),
        Duration::from_secs(1),
        || https("files.cell.example.org"),
        |(ok, log)| *ok && log.contains("matched cert's \"*.cell.example.org\""),
    );
    for (port, starttls) in [("993", false), ("587", true)] {
        wait_for(
            &format!("mail serves the wildcard certificate on {port}"),
            limit_with(monitor_limit()),
            Duration::from_secs(1),
            || certificate(port, starttls),
            |(verified, names)| *verified && names == "DNS:*.cell.example.org, DNS:cell.example.org",
        );
    }
    let listed = cell.api_json("GET", "/api/domain", None);
    assert_eq!(listed["certificates_by"], "pic", "{listed}");
    assert!(listed["acme"]["last_success"].is_string(), "{listed}");
}

/// The subject alternative names of a PEM certificate, as openssl prints them, sorted.
fn x509_names(pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap_or_default().trim().to_owned();
    let mut names: Vec<&str> = line.split(", ").collect();
    names.sort();
    names.join(", ")
}

/// A wait's limit: what it waits for, and a container activation's share of a busy machine.
fn limit_with(what: Duration) -> Duration {
    what + CONTAINER_START
}

/// Back up the running cell with its data through the API, download it, replace the machine
/// (containers, network and state directory gone), restore from the download: the same
/// generations and config come back, every service starts, and alice's mail is still there.
fn backup_wipe_restore(cell: &mut Running) {
    let passphrase = "tier-3 backup passphrase";
    let made = cell.api_json("POST", "/api/backups", Some(&json!({"passphrase": passphrase, "include_data": true})));
    let id = made["id"].as_str().unwrap();
    let archive = cell.cell.dir.path().join("downloaded.tar.zst");
    let url = format!("http://127.0.0.1:{}/api/backups/{id}", PORT);
    ok("curl", &["-sf", "-b", cell.jar.to_str().unwrap(), "-o", archive.to_str().unwrap(), &url]);
    let generations = cell.ok_text(&["--json", "generations"]);
    let desired = std::fs::read(cell.cell.state().join("cell_config.json")).unwrap();

    cell.stop_serve();
    cell.ok_text(&["containers", "remove", "all", "--publish", "none"]);
    std::fs::remove_dir_all(cell.cell.state()).unwrap();

    let pass = cell.cell.dir.path().join("passphrase");
    std::fs::write(&pass, passphrase).unwrap();
    let started = Instant::now();
    let restored = cell.ok_text(&[
        "--json",
        "restore",
        archive.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--include-data",
    ]);
    eprintln!("restore of a cell with its data: {:.2} s", started.elapsed().as_secs_f64());
    let restored: serde_json::Value = serde_json::from_str(&restored).unwrap();
    let before: Vec<serde_json::Value> = serde_json::from_str(&generations).unwrap();
    let after: Vec<serde_json::Value> = serde_json::from_str(&cell.ok_text(&["--json", "generations"])).unwrap();
    assert_eq!(after.len(), before.len() + 1, "{restored}");
    for (a, b) in before.iter().zip(&after) {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("current");
            v
        };
        assert_eq!(strip(a), strip(b), "a generation came back different");
    }
    assert_eq!(std::fs::read(cell.cell.state().join("cell_config.json")).unwrap(), desired);

    cell.start_serve();
    cell.wait_all_healthy("every service is healthy after the restore");
    assert_eq!(dig("alice-laptop.home.cell"), "10.8.0.2");
    let resolve = format!("mail.home.cell:993:{MAIL}");
    let alice = format!("alice@home.cell:{PASSWORD}");
    let out = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            "--cacert",
            cell.ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-u",
            &alice,
            "imaps://mail.home.cell/INBOX;UID=1",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from the tests"),
        "the mail did not come back with the data (and the CA and password with the secrets)"
    );
}

fn mail(cell: &Running) {
    let message = cell.cell.dir.path().join("message.txt");
    std::fs::write(
        &message,
        "From: carol@example.org\r\nTo: alice@home.cell\r\nSubject: tier 3\r\n\r\nhello from the tests\r\n",
    )
    .unwrap();
    let smtp = format!("smtp://{MAIL}:25");
    let msg = message.to_str().unwrap();
    ok(
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            &smtp,
            "--mail-from",
            "carol@example.org",
            "--mail-rcpt",
            "alice@home.cell",
            "-T",
            msg,
        ],
    );
    let refused = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            &smtp,
            "--mail-from",
            "carol@example.org",
            "--mail-rcpt",
            "nobody@home.cell",
            "-T",
            msg,
        ],
    );
    assert!(!refused.status.success(), "an unknown recipient must be refused");
    let imaps = |credentials: &str, url: &str| {
        let resolve = format!("mail.home.cell:993:{MAIL}");
        let ca = cell.ca.to_str().unwrap();
        run("curl", &["-s", "--max-time", "10", "--cacert", ca, "--resolve", &resolve, "-u", credentials, url])
    };
    let alice = format!("alice@home.cell:{PASSWORD}");
    // Postfix hands the message to dovecot over LMTP at once; each IMAPS try allows 10 s.
    wait_until("the message arrives over IMAPS", Duration::from_secs(30), || {
        let out = imaps(&alice, "imaps://mail.home.cell/INBOX;UID=1");
        String::from_utf8_lossy(&out.stdout).contains("hello from the tests")
    });
    // An alias: mail to postmaster@ lands in alice's mailbox.
    let to_alias = message.with_file_name("to-alias.txt");
    std::fs::write(
        &to_alias,
        "From: carol@example.org\r\nTo: postmaster@home.cell\r\nSubject: alias\r\n\r\nhello postmaster\r\n",
    )
    .unwrap();
    let rcpt = ["--mail-from", "carol@example.org", "--mail-rcpt", "postmaster@home.cell", "-T"];
    ok("curl", &[&["-s", "--max-time", "10", &smtp][..], &rcpt, &[to_alias.to_str().unwrap()]].concat());
    wait_until("the alias's message arrives in alice's mailbox", Duration::from_secs(30), || {
        let out = imaps(&alice, "imaps://mail.home.cell/INBOX;UID=2");
        String::from_utf8_lossy(&out.stdout).contains("hello postmaster")
    });
    let wrong = imaps("alice@home.cell:wrong", "imaps://mail.home.cell/INBOX");
    assert!(!wrong.status.success(), "a wrong password must not open the mailbox");
}

fn calendar(cell: &Running) {
    let host = "calendar.home.cell";
    let alice = format!("alice:{PASSWORD}");
    let bob = format!("bob:{PASSWORD}");
    let (code, body) =
        cell.https_status(host, &["-u", &alice, "-X", "MKCALENDAR", "https://calendar.home.cell/alice/work/"]);
    assert_eq!(code, 201, "MKCALENDAR: {body}");
    let event = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//pic//tests//EN\r\nBEGIN:VEVENT\r\nUID:tier3@pic\r\n\
                 DTSTAMP:20261127T100000Z\r\nDTSTART:20261201T090000Z\r\nSUMMARY:Tier three\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let url = "https://calendar.home.cell/alice/work/tier3.ics";
    let (code, body) = cell.https_status(
        host,
        &["-u", &alice, "-X", "PUT", "-H", "content-type: text/calendar", "--data-binary", event, url],
    );
    assert_eq!(code, 201, "PUT event: {body}");
    let (code, body) = cell.https_status(host, &["-u", &alice, url]);
    assert_eq!(code, 200);
    assert!(body.contains("SUMMARY:Tier three"), "{body}");
    let (code, _) = cell.https_status(host, &["-u", &bob, url]);
    assert_eq!(code, 403, "bob must not read alice's calendar");
}

fn files(cell: &Running) {
    let host = "files.home.cell";
    let alice = format!("alice:{PASSWORD}");
    let bob = format!("bob:{PASSWORD}");
    let base = "https://files.home.cell/alice";
    let (code, _) =
        cell.https_status(host, &["-u", &alice, "-X", "PUT", "--data-binary", "notes", &format!("{base}/notes.txt")]);
    assert_eq!(code, 201);
    let (code, body) =
        cell.https_status(host, &["-u", &alice, "-X", "PROPFIND", "-H", "Depth: 1", &format!("{base}/")]);
    assert_eq!(code, 207);
    assert!(body.contains("notes.txt"), "{body}");
    let destination = format!("Destination: {base}/moved.txt");
    let (code, _) =
        cell.https_status(host, &["-u", &alice, "-X", "MOVE", "-H", &destination, &format!("{base}/notes.txt")]);
    assert_eq!(code, 201);
    let lock = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
    let (code, body) = cell.https_status(
        host,
        &[
            "-u",
            &alice,
            "-X",
            "LOCK",
            "-H",
            "content-type: application/xml",
            "--data",
            lock,
            &format!("{base}/moved.txt"),
        ],
    );
    assert_eq!(code, 200, "LOCK: {body}");
    assert!(body.contains("opaquelocktoken:"), "{body}");
    let (code, _) = cell.https_status(host, &["-u", &bob, &format!("{base}/moved.txt")]);
    assert!(code == 401 || code == 403, "bob must not read alice's files (got {code})");
}

/// A device's access list holds for the sites behind the proxy: from the VPN addresses of the
/// example's devices, routed to the cell network as WireGuard routes them, a site outside the
/// list answers 403 and one inside answers; a changed list is a reload of Caddy that holds at once.
fn access_lists(cell: &Running) {
    const LAPTOP: &str = "10.8.0.2"; // alice-laptop: no list, every service
    const PHONE: &str = "10.8.0.3"; // alice-phone: dns, calendar, mail
    const STRANGER: &str = "10.8.0.77"; // an address of the VPN that no device has
    let devices = VpnDevices::new(24, "10.8.0.1", &[LAPTOP, PHONE, STRANGER]);
    // The web UI's upstream (`pic serve` on the gateway; the test's own serve listens elsewhere).
    let webui_root = cell.cell.dir.path().join("webui-stand-in");
    std::fs::create_dir_all(&webui_root).unwrap();
    std::fs::write(webui_root.join("index.html"), "the web UI").unwrap();
    let _webui = KillOnDrop(
        Command::new("python3")
            .args(["-m", "http.server", "3000", "--bind", GATEWAY, "--directory", webui_root.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let alice = format!("alice:{PASSWORD}");
    let calendar = |from: &str| devices.https(cell, from, "calendar.home.cell", &["https://calendar.home.cell/.web/"]);
    let files = |from: &str| {
        let args = ["-u", &alice, "-X", "PROPFIND", "-H", "Depth: 1", "https://files.home.cell/alice/"];
        devices.https(cell, from, "files.home.cell", &args)
    };
    // Python starts within a second; each request through the proxy allows 10 s.
    wait_for(
        "the web UI's stand-in answers through the proxy",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || devices.https(cell, PHONE, "pic.home.cell", &["https://pic.home.cell/"]),
        |(code, _)| *code == 200,
    );
    lan_address(cell);

    assert_eq!(calendar(LAPTOP).0, 200, "a device without a list reaches calendar");
    assert_eq!(files(LAPTOP).0, 207, "a device without a list reaches files");
    assert_eq!(calendar(PHONE).0, 200, "calendar is in alice-phone's list");
    let (code, page) = files(PHONE);
    assert_eq!(code, 403, "files is not in alice-phone's list: {page}");
    assert!(page.contains("Files is not open to this device") && page.contains(PHONE), "{page}");
    assert_eq!(calendar(STRANGER).0, 403, "an address no device has is refused");
    let (code, body) = devices.https(cell, PHONE, "pic.home.cell", &["https://pic.home.cell/"]);
    assert_eq!((code, body.as_str()), (200, "the web UI"), "every device reaches the web UI");
    let (code, _) = cell.https_status(
        "files.home.cell",
        &["-u", &alice, "-X", "PROPFIND", "-H", "Depth: 1", "https://files.home.cell/alice/"],
    );
    assert_eq!(code, 207, "the cell network is not a device and is not limited");

    // A changed list is a reload of the proxy: nothing recreated or restarted, and it holds at once.
    let before = container_starts();
    let with_files = json!({"access": ["dns", "calendar", "mail", "files"]});
    cell.api_json("PATCH", "/api/peers/alice-phone", Some(&with_files));
    assert_eq!(files(PHONE).0, 207, "files was added to alice-phone's list");
    let without_calendar = json!({"access": ["dns", "mail", "files"]});
    cell.api_json("PATCH", "/api/peers/alice-phone", Some(&without_calendar));
    assert_eq!(calendar(PHONE).0, 403, "calendar was taken off alice-phone's list");
    cell.api_json("PATCH", "/api/peers/alice-phone", Some(&json!({"access": null})));
    assert_eq!((calendar(PHONE).0, files(PHONE).0), (200, 207), "without a list alice-phone reaches all");
    cell.api_json("PATCH", "/api/peers/alice-phone", Some(&json!({"access": ["dns", "calendar", "mail"]})));
    assert_eq!(files(PHONE).0, 403);
    assert_eq!(container_starts(), before, "a changed access list must not recreate or restart a container");
}

fn changes(cell: &Running) {
    // One peer added: DNS knows it at once, and no container is recreated or restarted.
    let before = container_starts();
    let peer = cell.api_json("POST", "/api/peers", Some(&json!({"name": "carol-phone"})));
    let address = peer["peer"]["address"].as_str().unwrap().to_owned();
    assert_eq!(dig("carol-phone.home.cell"), address);
    assert_eq!(container_starts(), before, "a peer change must not recreate or restart a container");

    // A DNS upstream changed: only DNS takes new files (reloaded in place); nothing restarts.
    let bundles = |svc: &str| {
        std::fs::read_to_string(cell.cell.state().join(format!("run/{svc}/bundle/container.json"))).unwrap()
    };
    let others: Vec<String> = SERVICES.iter().filter(|s| **s != "dns").map(|s| bundles(s)).collect();
    let stamp =
        |svc: &str| std::fs::metadata(cell.cell.state().join(format!("run/{svc}/bundle"))).unwrap().modified().unwrap();
    let stamps: Vec<_> = SERVICES.iter().filter(|s| **s != "dns").map(|s| stamp(s)).collect();
    let changed = cell.change_config(|c| c["services"]["dns"]["upstreams"] = json!([GATEWAY, "192.0.2.53"]));
    let unbound = ok("docker", &["exec", "pic-dns", "cat", "/etc/pic/bundle/unbound.conf"]);
    assert!(unbound.contains("192.0.2.53"), "the DNS container must see its new config");
    assert_eq!(container_starts(), before, "a DNS change must not recreate or restart a container");
    assert_eq!(SERVICES.iter().filter(|s| **s != "dns").map(|s| bundles(s)).collect::<Vec<_>>(), others);
    assert_eq!(
        SERVICES.iter().filter(|s| **s != "dns").map(|s| stamp(s)).collect::<Vec<_>>(),
        stamps,
        "only DNS was touched"
    );
    assert_eq!(dig("upstream.example.org"), "192.0.2.7", "unbound still answers after its reload");

    // Rollback: the previous config comes back into the running containers.
    let rolled = cell.api_json("POST", "/api/rollback", None);
    assert_eq!(rolled["from"], changed);
    let unbound = ok("docker", &["exec", "pic-dns", "cat", "/etc/pic/bundle/unbound.conf"]);
    assert!(!unbound.contains("192.0.2.53"), "rollback must bring the previous DNS config back");
    assert_eq!(dig("carol-phone.home.cell"), address);

    // Idempotent: activating the same generation again changes nothing.
    let current = cell.cell.current().unwrap();
    cell.api_json("POST", &format!("/api/generations/{current}/switch"), None);
    assert_eq!(container_starts(), before);
}

/// Every container's log is copied into `logs/<service>.log` and searched together with `pic
/// serve`'s; `logging.levels` takes effect: unbound's debug lines appear only while DNS logs at
/// debug.
fn logs_and_verbosity(cell: &Running) {
    // `pic serve` looks for new containers every 5 s; a reload makes unbound log at once.
    let limit = limit_with(Duration::from_secs(5));
    let every = Duration::from_millis(500);
    let search = |query: &str| -> Vec<serde_json::Value> {
        let found = cell.api_json("GET", &format!("/api/logs?limit=1000&{query}"), None);
        found.as_array().cloned().unwrap_or_default()
    };
    let debug_lines =
        |since: &str| search(&format!("service=dns&since={since}")).iter().filter(|e| e["level"] == "DEBUG").count();
    wait_for(
        "unbound's start in the DNS log",
        limit,
        every,
        || search("service=dns&q=start%20of%20service").len(),
        |n| *n > 0,
    );
    let together = search("");
    let services: std::collections::BTreeSet<&str> = together.iter().filter_map(|e| e["service"].as_str()).collect();
    for service in ["api", "dns", "proxy", "mail"] {
        assert!(services.contains(service), "{service} is not in the logs searched together: {services:?}");
    }
    assert_eq!(debug_lines("1970-01-01T00:00:00Z"), 0, "DNS logs at info: no debug line");

    let before = jiff::Timestamp::now().to_string();
    cell.change_config(|c| c["logging"]["levels"]["dns"] = json!("debug"));
    let seen = wait_for("a debug line of unbound", limit, every, || debug_lines(&before), |n| *n > 0);
    eprintln!("logs: {seen} debug lines of unbound once DNS logs at debug");
    let after = jiff::Timestamp::now().to_string();
    cell.change_config(|c| c["logging"]["levels"]["dns"] = json!("info"));
    // Unbound may say a few more debug lines while it stops; from its start at info, none.
    let restarts = wait_for(
        "unbound's restart at info in the DNS log",
        limit,
        every,
        || search(&format!("service=dns&since={after}&q=start%20of%20service")),
        |found| !found.is_empty(),
    );
    let restarted = restarts.last().unwrap()["timestamp"].as_str().unwrap().to_owned();
    assert_eq!(dig("alice-laptop.home.cell"), "10.8.0.2");
    let late: Vec<_> =
        search(&format!("service=dns&since={restarted}")).into_iter().filter(|e| e["level"] == "DEBUG").collect();
    assert!(late.is_empty(), "back at info, unbound wrote debug lines: {late:?}");
    let kept = std::fs::metadata(cell.cell.state().join("logs/dns.log")).unwrap().len();
    assert!(kept > 0 && kept <= 5 * 1024 * 1024, "logs/dns.log has {kept} bytes");
}

/// A generation that enables webmail with an image whose server never listens: the health gate
/// marks it failed and switches back, and the other services answer throughout.
fn health_gate(cell: &Running) {
    ok("docker", &["tag", "pic/webmail:latest", "pic/webmail:good"]);
    run("docker", &["rm", "-f", "pic-test-broken"]);
    ok(
        "docker",
        &[
            "run",
            "--name",
            "pic-test-broken",
            "--entrypoint",
            "/bin/sh",
            "pic/webmail:good",
            "-c",
            "printf '#!/bin/sh\\nexec sleep 3600\\n' > /usr/local/bin/pic-webmail",
        ],
    );
    let broken = ok("docker", &["commit", "--change", "ENTRYPOINT []", "pic-test-broken", "pic/webmail:latest"]);
    run("docker", &["rm", "-f", "pic-test-broken"]);

    let before = container_starts();
    let good = cell.cell.current().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let prober = {
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let counter = if dig("alice-laptop.home.cell") == "10.8.0.2" { &answered } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let attempted = cell.change_config(|c| c["services"]["webmail"]["enabled"] = json!(true));
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    ok("docker", &["tag", "pic/webmail:good", "pic/webmail:latest"]);
    ok("docker", &["rmi", "pic/webmail:good"]);
    // Untagged now: removed, so that runs of this test do not pile up images.
    run("docker", &["rmi", broken.trim()]);

    assert_eq!(attempted, good, "the failed generation must have been switched back");
    let generations = cell.api_json("GET", "/api/generations", None);
    let failed_gen =
        generations.as_array().unwrap().iter().rev().find(|g| g["failed"].is_object()).expect("a failed generation");
    assert!(failed_gen["number"].as_u64().unwrap() > good);
    let reason = failed_gen["failed"]["reason"].as_str().unwrap();
    assert!(reason.contains("webmail"), "{reason}");
    assert!(ok("docker", &["ps", "-a", "--format", "{{.Names}}"]).lines().all(|n| n != "pic-webmail"));
    assert_eq!(container_starts(), before, "the other services were not touched");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "DNS stopped answering during the failed switch");
    assert!(answered.load(Ordering::Relaxed) > 10);
    let listed = cell.ok_text(&["generations"]);
    assert!(listed.contains("FAILED"), "{listed}");
}

/// The container manager's routes, against the running cell.
fn container_manager(cell: &Running) {
    let list = cell.containers();
    let dns = list.iter().find(|c| c["service"] == "dns").expect("the dns container is listed");
    assert_eq!(dns["state"], "running");
    assert_eq!(dns["image"], "pic/dns:latest");
    let (code, log) = cell.api("GET", "/api/containers/dns/logs?tail=20", None);
    assert_eq!(code, 200);
    assert!(log.contains("unbound"), "{log}");
    let restarted = cell.api_json("POST", "/api/containers/pic-calendar/restart", None);
    assert_eq!(restarted["container"], "pic-calendar");
    let (code, _) = cell.api("POST", "/api/containers/pic-calendar/explode", None);
    assert_eq!(code, 400);
    let (code, _) = cell.api("POST", "/api/containers/nginx/stop", None);
    assert_eq!(code, 404, "only the cell's containers can be managed");
    let images = cell.api_json("GET", "/api/images", None);
    assert!(images.as_array().unwrap().iter().any(|i| i["pic_image"] == "proxy"));
    let volumes = cell.api_json("GET", "/api/volumes", None);
    assert!(volumes["data"].as_array().unwrap().iter().any(|d| d["service"] == "mail"));
    // No registry answers here: the pull fails with the engine's reason (loopback only).
    let (code, body) = cell.api("POST", "/api/images/pull", Some(&json!({"image": "127.0.0.1:1/nothing:latest"})));
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("pull_failed"), "{body}");
    let (code, _) = cell.api("POST", "/api/images/pull", Some(&json!({"image": "bad image;name"})));
    assert_eq!(code, 422);
}

/// An OpenVPN exit runs in a container the cell makes from its bundle: the tunnel device,
/// forwarding on, read-only root and only the capabilities it needs, its provider's file and
/// account mounted from secrets/ (never in the bundle). Its provider here is the container's own
/// 127.0.0.1, which refuses: OpenVPN keeps trying and nothing leaves the machine.
fn exit_container(cell: &Running) {
    let ca = std::fs::read_to_string(cell.cell.state().join("secrets/ca/ca.crt")).unwrap();
    let ovpn = format!("client\ndev tun\nproto udp\nremote 127.0.0.1 1194\nnobind\nauth-user-pass\n<ca>\n{ca}</ca>\n");
    let new =
        json!({"name": "office", "openvpn": ovpn, "dns": "10.66.0.1", "username": "me", "password": "account-pw"});
    cell.api_json("POST", "/api/exits", Some(&new));
    let name = "pic-exit-office";
    // The activation behind the API's answer made it; a start on a busy machine takes seconds.
    wait_for(
        "the exit's container runs",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || container_state(name),
        |s| s == "running",
    );
    let inspect = |format: &str| ok("docker", &["inspect", "-f", format, name]).trim().to_owned();
    assert_eq!(inspect("{{json .HostConfig.CapAdd}}"), r#"["NET_ADMIN","SETUID","SETGID"]"#);
    assert_eq!(inspect("{{json .HostConfig.CapDrop}}"), r#"["ALL"]"#);
    assert_eq!(inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert!(inspect("{{json .HostConfig.Devices}}").contains("/dev/net/tun"));
    assert_eq!(inspect("{{index .HostConfig.Sysctls \"net.ipv4.ip_forward\"}}"), "1");
    // Its routes keep forwarded traffic in the tunnel (or drop it), and OpenVPN runs.
    let table = ok("docker", &["exec", name, "ip", "route", "show", "table", "100"]);
    assert!(table.contains("default dev tun0") && table.contains("unreachable default"), "{table}");
    assert!(ok("docker", &["top", name]).contains("openvpn --config /run/pic/exit/client.ovpn"));
    let bundle = cell.cell.state().join("run/exit-office/bundle");
    let files: Vec<String> =
        std::fs::read_dir(&bundle).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!files.iter().any(|f| f.contains("ovpn") || f.contains("auth")), "secrets in the bundle: {files:?}");
    cell.api_json("DELETE", "/api/exits/office", None);
    wait_for(
        "the exit's container is gone",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || ok("docker", &["ps", "-a", "--format", "{{.Names}}"]).lines().any(|n| n == name),
        |present| !present,
    );
}

/// `docker inspect`'s word on a container's state: running, exited, ...
fn container_state(name: &str) -> String {
    ok("docker", &["inspect", "-f", "{{.State.Status}}", name]).trim().to_owned()
}

/// A service an admin stops stays stopped — through monitor intervals, a switch to a generation
/// that changes something else, and a restart of `pic serve` — until it is started again, which
/// brings it back healthy.
fn stop_means_stop(cell: &mut Running) {
    let stopped = cell.api_json("POST", "/api/containers/ntp/stop", None);
    assert_eq!(stopped["container"], "pic-ntp");
    let listed = |cell: &Running| cell.containers().into_iter().find(|c| c["service"] == "ntp").unwrap();
    let ntp = listed(cell);
    assert_eq!((ntp["state"].as_str(), ntp["stopped"]["by"].as_str()), (Some("exited"), Some("alice")), "{ntp}");
    assert!(ntp["stopped"]["at"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{ntp}");

    let two_looks = MONITOR_INTERVAL * 2 + Duration::from_secs(1);
    std::thread::sleep(two_looks);
    assert_eq!(container_state("pic-ntp"), "exited", "the monitor started a service an admin stopped");

    let peer = cell.api_json("POST", "/api/peers", Some(&json!({"name": "stop-test"})));
    assert_eq!(container_state("pic-ntp"), "exited", "a new generation started a stopped service: {peer}");

    cell.stop_serve();
    cell.start_serve();
    std::thread::sleep(two_looks);
    assert_eq!(container_state("pic-ntp"), "exited", "a restarted pic serve started a stopped service");
    assert_eq!(listed(cell)["stopped"]["by"], "alice", "the stop is kept in the state directory");

    let started = cell.api_json("POST", "/api/containers/ntp/start", None);
    assert_eq!(started["container"], "pic-ntp");
    assert_eq!(container_state("pic-ntp"), "running");
    let sntp = "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); \
                s.sendto(b'\\x23'+b'\\0'*47,(sys.argv[1],123)); d=s.recv(68); sys.exit(0 if d[0]&7==4 else 1)";
    ok("python3", &["-c", sntp, NTP]);
    let every = Duration::from_millis(250);
    wait_for(
        "the monitor finds ntp healthy again",
        monitor_limit(),
        every,
        || listed(cell)["health"].clone(),
        |h| h == "healthy",
    );
    assert!(listed(cell)["stopped"].is_null());
    cell.api_json("DELETE", "/api/peers/stop-test", None);

    // The command line records its stops too, so that `pic serve` leaves them alone.
    cell.ok_text(&["containers", "stop", "ntp", "--publish", "none"]);
    let list = cell.ok_text(&["containers", "list", "--publish", "none"]);
    assert!(
        list.lines().any(|l| l.starts_with("ntp ") && l.contains("stopped by") && l.contains("(command line)")),
        "{list}"
    );
    std::thread::sleep(two_looks);
    assert_eq!(container_state("pic-ntp"), "exited", "the monitor started a service stopped from the command line");
    cell.ok_text(&["containers", "start", "ntp", "--publish", "none"]);
    assert_eq!(container_state("pic-ntp"), "running");
}

/// Requests that switch no generation make no container action: a backup and a password change
/// leave Docker's event stream of the cell's containers empty — and the new password works at
/// once in every daemon (they read their credential files afresh), the old one no longer.
fn quiet_requests(cell: &Running) {
    let since = ok("date", &["+%s.%N"]).trim().to_owned();
    cell.api_json("POST", "/api/backups", Some(&json!({"passphrase": "quiet requests passphrase"})));
    let new_password = "a brand new password";
    cell.api_json("POST", "/api/users/alice/password", Some(&json!({"password": new_password})));
    let until = ok("date", &["+%s.%N"]).trim().to_owned();
    let events = ok(
        "docker",
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=container",
            "--filter",
            "label=pic.service",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ],
    );
    assert!(events.trim().is_empty(), "a backup and a password change touched containers:\n{events}");

    let imaps = |password: &str| {
        let resolve = format!("mail.home.cell:993:{MAIL}");
        let credentials = format!("alice@home.cell:{password}");
        let ca = cell.ca.to_str().unwrap();
        let args = ["-s", "--max-time", "10", "--cacert", ca, "--resolve", &resolve, "-u", &credentials];
        run("curl", &[&args[..], &["imaps://mail.home.cell/INBOX"]].concat()).status.success()
    };
    let calendar = |password: &str| {
        let alice = format!("alice:{password}");
        let args = ["-u", &alice, "-X", "PROPFIND", "-H", "Depth: 0", "https://calendar.home.cell/alice/"];
        cell.https_status("calendar.home.cell", &args).0
    };
    let files = |password: &str| {
        let alice = format!("alice:{password}");
        let args = ["-u", &alice, "-X", "PROPFIND", "-H", "Depth: 1", "https://files.home.cell/alice/"];
        cell.https_status("files.home.cell", &args).0
    };
    assert!(imaps(new_password) && !imaps(PASSWORD), "IMAPS takes the new password at once, and only it");
    assert_eq!((calendar(new_password), calendar(PASSWORD)), (207, 401), "CalDAV takes the new password");
    assert_eq!((files(new_password), files(PASSWORD)), (207, 401), "WebDAV takes the new password");
    cell.api_json("POST", "/api/users/alice/password", Some(&json!({"password": PASSWORD})));
    assert!(imaps(PASSWORD), "and the old one again once it is set back");
}

/// A container killed from outside is restarted by the health monitor and reported; one removed
/// from outside is made again.
fn monitor(cell: &Running) {
    ok("docker", &["kill", "pic-ntp"]);
    // What the container manager says of a service: its state, health and restart count.
    let seen = |service: &str| {
        let c = cell.containers().into_iter().find(|c| c["service"] == service);
        c.map(|c| (c["state"].to_string(), c["health"].to_string(), c["restarts"].as_u64().unwrap_or(0)))
    };
    let every = Duration::from_millis(250);
    wait_for(
        "the monitor restarts pic-ntp",
        monitor_limit(),
        every,
        || seen("ntp"),
        |s| matches!(s, Some((state, _, restarts)) if state == "\"running\"" && *restarts >= 1),
    );
    ok("docker", &["rm", "-f", "pic-files"]);
    wait_for(
        "the monitor makes pic-files again",
        monitor_limit(),
        every,
        || seen("files"),
        |s| matches!(s, Some((state, _, _)) if state == "\"running\""),
    );
}
