//! Health probes, run from the host against a service's address on the cell network: a DNS
//! query, a TCP connect, an HTTP GET, an SNTP request, or (for DHCP, which answers only
//! broadcasts on its own network) a running process.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use super::spec::{ContainerSpec, Health};
use super::{Engine, container_name};

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes `spec`'s service once: its container runs, and it answers.
pub async fn probe(engine: &Engine, spec: &ContainerSpec) -> Result<()> {
    let name = container_name(&spec.service);
    let inspect = engine.api().inspect_container(&name, None).await.with_context(|| format!("inspecting {name}"))?;
    let state = inspect.state.unwrap_or_default();
    if state.running != Some(true) {
        bail!("container {name} is not running (exit code {:?})", state.exit_code);
    }
    answer(spec).await
}

/// Whether `spec`'s service answers on its address (a process check passes: Docker's state says
/// whether it runs).
async fn answer(spec: &ContainerSpec) -> Result<()> {
    let ip: IpAddr = spec.network.address.parse().with_context(|| format!("address of {}", spec.service))?;
    let result = match &spec.health {
        Health::Dns { port, query } => dns(SocketAddr::new(ip, *port), query).await,
        Health::Tcp { port } => tcp(SocketAddr::new(ip, *port)).await.map(drop),
        Health::Http { port, path } => http(SocketAddr::new(ip, *port), path).await,
        Health::Ntp { port } => ntp(SocketAddr::new(ip, *port)).await,
        Health::Process { .. } => Ok(()),
    };
    result.with_context(|| format!("{} health check", spec.service))
}

/// Whether the container of `service` started less than `grace` ago (a daemon that has just
/// started may not answer yet: a failed probe then says nothing).
pub async fn starting(engine: &Engine, service: &str, grace: Duration) -> bool {
    let name = container_name(service);
    let Ok(inspect) = engine.api().inspect_container(&name, None).await else { return false };
    let started = inspect.state.and_then(|s| s.started_at).and_then(|at| at.parse::<jiff::Timestamp>().ok());
    started.is_some_and(|at| jiff::Timestamp::now().duration_since(at).unsigned_abs() < grace)
}

/// Probes until the service answers or `limit` has passed; returns how long it took. While it
/// does not answer, only its address is tried (Docker is asked whether the container runs for a
/// process check, and for the error at the end), at growing intervals: on a slow board the
/// probes of services still starting would otherwise take CPU from their start.
pub async fn wait_healthy(engine: &Engine, spec: &ContainerSpec, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = match spec.health {
            Health::Process { .. } => probe(engine, spec).await,
            _ => answer(spec).await,
        };
        match attempt {
            Ok(()) => return Ok(started.elapsed()),
            Err(_) if started.elapsed() >= limit => {
                // Asked once more with Docker: the error then says when the container stopped.
                return match probe(engine, spec).await {
                    Ok(()) => Ok(started.elapsed()),
                    Err(error) => Err(error.context(format!("not healthy within {} s", limit.as_secs()))),
                };
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 3 / 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn tcp(addr: SocketAddr) -> Result<TcpStream> {
    timeout(PROBE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("no answer from {addr}"))?
        .with_context(|| format!("connecting to {addr}"))
}

async fn dns(addr: SocketAddr, query: &str) -> Result<()> {
    let mut message = Message::new();
    message.set_id(rand_id()).set_recursion_desired(true);
    message.add_query(Query::query(Name::from_ascii(query)?, RecordType::A));
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.send_to(&message.to_vec()?, addr).await?;
    let mut buf = [0u8; 1500];
    let (len, _) =
        timeout(PROBE_TIMEOUT, socket.recv_from(&mut buf)).await.map_err(|_| anyhow!("no answer from {addr}"))??;
    let reply = Message::from_vec(&buf[..len])?;
    if reply.id() != message.id() || reply.response_code() != ResponseCode::NoError || reply.answers().is_empty() {
        bail!("{addr} answered {query} with {} and {} records", reply.response_code(), reply.answers().len());
    }
    Ok(())
}

async fn http(addr: SocketAddr, path: &str) -> Result<()> {
    use http_body_util::Empty;
    let stream = tcp(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path).header("host", addr.ip().to_string()).body(Empty::<bytes::Bytes>::new())?;
    let response =
        timeout(PROBE_TIMEOUT, sender.send_request(request)).await.map_err(|_| anyhow!("no answer from {addr}"))??;
    if response.status().is_server_error() {
        bail!("GET {path} on {addr} answered {}", response.status());
    }
    Ok(())
}

/// An SNTP (RFC 4330) client request: the server must answer in server mode.
async fn ntp(addr: SocketAddr) -> Result<()> {
    let mut request = [0u8; 48];
    request[0] = (4 << 3) | 3; // version 4, mode 3 (client)
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.send_to(&request, addr).await?;
    let mut reply = [0u8; 68];
    let (len, _) =
        timeout(PROBE_TIMEOUT, socket.recv_from(&mut reply)).await.map_err(|_| anyhow!("no answer from {addr}"))??;
    if len < 48 || reply[0] & 0x7 != 4 {
        bail!("{addr} sent no NTP server reply");
    }
    Ok(())
}

fn rand_id() -> u16 {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).unwrap_or_default();
    u16::from_le_bytes(bytes)
}
