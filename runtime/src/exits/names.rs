//! The exits' names forwarder: the firewall sends every DNS query of an exit's devices here (to
//! the cell's VPN address, the exit's port), whatever server they asked. Names of the cell and
//! of linked cells are asked of the cell's DNS; every other name of the exit's DNS server,
//! through the exit only (the socket is bound to the exit's interface, or carries the exit's
//! mark, which only the exit's routing table takes), so that no lookup of
//! those devices leaves through the cell's uplink. When the exit is down they get SERVFAIL.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use pic_builder::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

use super::DesiredExit;

/// How long a DNS server may take to answer (a resolver retries after about this long).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);
/// How often the listeners are compared with the current generation.
const RECHECK: Duration = Duration::from_secs(2);

/// How a socket reaches an exit and nothing else: bound to the exit's own interface (a
/// WireGuard exit), and marked with the exit's mark, which the `ip rule`s send to the exit's
/// table only (an exit in a container, whose tunnel the host cannot bind to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub device: Option<String>,
    pub mark: u32,
}

impl Out {
    pub fn of(exit: &super::DesiredExit) -> Out {
        Out { device: exit.wireguard.is_some().then(|| exit.interface.clone()), mark: exit.mark }
    }

    fn apply(&self, socket: &impl std::os::fd::AsFd) -> io::Result<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        setsockopt(socket, sockopt::Mark, &self.mark).map_err(io::Error::from)?;
        if let Some(device) = &self.device {
            setsockopt(socket, sockopt::BindToDevice, &std::ffi::OsString::from(device)).map_err(io::Error::from)?;
        }
        Ok(())
    }
}

/// Where one exit's queries go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    listen: SocketAddr,
    /// How the exit's DNS is reached through the exit only.
    out: Out,
    exit_dns: SocketAddr,
    cell_dns: Option<SocketAddr>,
    /// The cell's domain and the linked cells' domains, lowercase, without a trailing dot.
    local: Vec<String>,
}

impl Route {
    fn is_local(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.local.iter().any(|d| name == *d || name.ends_with(&format!(".{d}")))
    }
}

/// What the current generation asks for: one route per exit.
fn wanted(state: &State) -> BTreeMap<String, Route> {
    let Ok(Some(config)) = state.desired_config() else { return BTreeMap::new() };
    let Ok(exits) = super::desired(state) else { return BTreeMap::new() };
    let address = config.wireguard_address();
    let cell_dns = pic_builder::config::services::get("dns")
        .filter(|s| (s.enabled)(&config))
        .map(|s| SocketAddr::from((config.service_address(s), 53)));
    let mut local = vec![config.domain().to_ascii_lowercase()];
    local.extend(config.links.iter().map(|l| l.domain.to_ascii_lowercase()));
    exits
        .into_iter()
        .map(|exit: DesiredExit| {
            let route = Route {
                listen: SocketAddr::from((address, exit.dns_port)),
                out: Out::of(&exit),
                exit_dns: SocketAddr::from((exit.dns, 53)),
                cell_dns,
                local: local.clone(),
            };
            (exit.name, route)
        })
        .collect()
}

/// Keeps one forwarder per exit listening, following the current generation (a forwarder
/// whose address is not on the host yet is tried again).
pub async fn serve(state: std::sync::Arc<State>) {
    let mut running: BTreeMap<String, (Route, tokio::task::JoinHandle<()>)> = BTreeMap::new();
    loop {
        let wanted = wanted(&state);
        running.retain(|name, (route, task)| {
            let keep = wanted.get(name) == Some(route) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, route) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let bound = match UdpSocket::bind(route.listen).await {
                Ok(udp) => TcpListener::bind(route.listen).await.map(|tcp| (udp, tcp)),
                Err(error) => Err(error),
            };
            match bound {
                Ok((udp, tcp)) => {
                    tracing::info!(exit = %name, listen = %route.listen, "exit names forwarder listening");
                    let shared = Arc::new(route.clone());
                    let task = tokio::spawn({
                        let shared = shared.clone();
                        async move {
                            tokio::join!(forward(Arc::new(udp), shared.clone()), forward_tcp(tcp, shared));
                        }
                    });
                    running.insert(name, (route, task));
                }
                Err(error) => tracing::debug!(exit = %name, %error, "exit names forwarder cannot listen yet"),
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
}

async fn forward(socket: Arc<UdpSocket>, route: Arc<Route>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (len, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "exit names forwarder stopped");
                return;
            }
        };
        let query = buffer[..len].to_vec();
        let (socket, route) = (socket.clone(), route.clone());
        tokio::spawn(async move {
            let reply = answer(&route, &query).await;
            let _ = socket.send_to(&reply, from).await;
        });
    }
}

/// DNS over TCP (a client's retry when an answer is too large for UDP): each query, with its
/// two-byte length, answered the same way over TCP.
async fn forward_tcp(listener: TcpListener, route: Arc<Route>) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "exit names forwarder (TCP) stopped");
                return;
            }
        };
        let route = route.clone();
        tokio::spawn(async move {
            while let Ok(Ok(query)) = tokio::time::timeout(IDLE_TCP, read_framed(&mut stream)).await {
                let reply = answer_over(&route, &query, Transport::Tcp).await;
                if write_framed(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// How long a TCP client may stay silent between queries.
const IDLE_TCP: Duration = Duration::from_secs(10);

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(io::Error::other)?;
    stream.write_u16(len).await?;
    stream.write_all(message).await
}

/// How a query is asked upstream: as the client asked it.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// The answer to one query: from the cell's DNS or the exit's, or SERVFAIL.
async fn answer(route: &Route, query: &[u8]) -> Vec<u8> {
    answer_over(route, query, Transport::Udp).await
}

async fn answer_over(route: &Route, query: &[u8], transport: Transport) -> Vec<u8> {
    let Ok(message) = Message::from_vec(query) else { return Vec::new() };
    let name = message.queries().first().map(|q| q.name().to_ascii()).unwrap_or_default();
    let ask = |server, out| async move {
        match transport {
            Transport::Udp => ask(server, out, query).await,
            Transport::Tcp => ask_tcp(server, out, query).await,
        }
    };
    let asked = if route.is_local(&name) {
        match route.cell_dns {
            Some(server) => ask(server, None).await,
            None => Err(io::Error::other("the cell runs no DNS")),
        }
    } else {
        ask(route.exit_dns, Some(&route.out)).await
    };
    match asked {
        Ok(reply) => reply,
        Err(error) => {
            tracing::debug!(%name, out = ?route.out, %error, "exit names: no answer");
            let mut failed = message;
            failed.set_message_type(MessageType::Response).set_response_code(ResponseCode::ServFail);
            failed.to_vec().unwrap_or_default()
        }
    }
}

/// Asks the exit's DNS server for a well-known name through the exit only: whether the exit
/// carries traffic now, and how long the answer took.
pub async fn probe(out: &Out, dns: Ipv4Addr) -> io::Result<Duration> {
    let mut query = Message::new();
    query.set_id(rand_id()).set_recursion_desired(true);
    let name = hickory_proto::rr::Name::from_ascii("example.org.").map_err(io::Error::other)?;
    query.add_query(hickory_proto::op::Query::query(name, hickory_proto::rr::RecordType::A));
    let started = std::time::Instant::now();
    let reply = ask(SocketAddr::from((dns, 53)), Some(out), &query.to_vec().map_err(io::Error::other)?).await?;
    let reply = Message::from_vec(&reply).map_err(io::Error::other)?;
    if reply.response_code() != ResponseCode::NoError {
        return Err(io::Error::other(format!("the exit's DNS server answered {}", reply.response_code())));
    }
    Ok(started.elapsed())
}

/// A query id that differs from one probe to the next.
fn rand_id() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_ne_bytes(bytes)
}

/// [`ask`] over TCP.
async fn ask_tcp(server: SocketAddr, out: Option<&Out>, query: &[u8]) -> io::Result<Vec<u8>> {
    let socket = TcpSocket::new_v4()?;
    if let Some(out) = out {
        out.apply(&socket)?;
    }
    let exchange = async {
        let mut stream = socket.connect(server).await?;
        write_framed(&mut stream, query).await?;
        read_framed(&mut stream).await
    };
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{server} did not answer")))?
}

/// Sends `query` to `server` (through the exit only, when given) and waits for its answer.
async fn ask(server: SocketAddr, out: Option<&Out>, query: &[u8]) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::from((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))).await?;
    if let Some(out) = out {
        out.apply(&socket)?;
    }
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buffer = vec![0u8; 4096];
    let id = query.get(..2).map(<[u8]>::to_vec);
    loop {
        let len = tokio::time::timeout(ANSWER_TIMEOUT, socket.recv(&mut buffer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{server} did not answer")))??;
        // Only the answer to this query (its id), not a stray datagram.
        if buffer.get(..2).map(<[u8]>::to_vec) == id {
            return Ok(buffer[..len].to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            listen: "10.8.0.1:5300".parse().unwrap(),
            out: Out { device: Some("x-provider".into()), mark: 52000 },
            exit_dns: "10.64.0.1:53".parse().unwrap(),
            cell_dns: Some("172.20.0.3:53".parse().unwrap()),
            local: vec!["home.cell".into(), "parents.cell".into()],
        }
    }

    #[test]
    fn the_cells_names_stay_local_and_the_rest_goes_to_the_exit() {
        let route = route();
        for local in ["home.cell.", "calendar.home.cell.", "CALENDAR.Parents.Cell", "x.y.parents.cell."] {
            assert!(route.is_local(local), "{local}");
        }
        for remote in ["example.org.", "notparents.cell.", "cell.", "home.cell.example.org."] {
            assert!(!route.is_local(remote), "{remote}");
        }
    }

    #[tokio::test]
    async fn a_query_the_exit_cannot_answer_gets_servfail() {
        // An interface that does not exist: the socket cannot be bound to it, nothing is sent.
        let mut route = route();
        route.out.device = Some("x-missing".into());
        let mut query = Message::new();
        query.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("example.org.").unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        let reply = Message::from_vec(&answer(&route, &query.to_vec().unwrap()).await).unwrap();
        assert_eq!(reply.response_code(), ResponseCode::ServFail);
        assert_eq!(reply.id(), query.id());
    }
}
