//! Each provider's update, as its own documentation describes it: the dyndns2 family (No-IP,
//! any dyndns2 server, pic.ngo), DuckDNS, FreeDNS's v2 token URLs and Cloudflare's API v4. Every
//! answer becomes an `Outcome`; nothing here decides whether to send (that is the cycle's).

use std::time::Duration;

use pic_builder::config::DdnsProvider;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::status::Status;
use super::{Addresses, BACK_OFF, Http, Outcome, Settings};

/// The provider's public API when the config names none.
pub fn default_server(provider: DdnsProvider) -> &'static str {
    match provider {
        // pic.ngo's protocol is not public: the original cell's service, taken to be dyndns2.
        DdnsProvider::PicNgo => "https://ddns.pic.ngo",
        DdnsProvider::Cloudflare => "https://api.cloudflare.com/client/v4",
        DdnsProvider::Duckdns => "https://www.duckdns.org",
        DdnsProvider::Noip => "https://dynupdate.no-ip.com",
        DdnsProvider::Freedns => "https://sync.afraid.org",
        // Validation requires a server for dyndns2.
        DdnsProvider::Dyndns2 => "",
    }
}

/// Sends the update of `addresses` for `settings.name`.
pub async fn update(
    settings: &Settings,
    credential: &str,
    addresses: &Addresses,
    status: &mut Status,
    http: &Http,
) -> Outcome {
    let client = Client { http: &http.any, agent: user_agent(settings) };
    match settings.provider {
        DdnsProvider::Noip | DdnsProvider::Dyndns2 | DdnsProvider::PicNgo => {
            dyndns2(&client, settings, credential, addresses).await
        }
        DdnsProvider::Duckdns => duckdns(&client, settings, credential, addresses).await,
        DdnsProvider::Freedns => freedns(&client, settings, credential, addresses).await,
        DdnsProvider::Cloudflare => cloudflare(&client, settings, credential, addresses, status).await,
    }
}

/// No-IP requires "Company NameOfProgram/Version maintainer-contact"; the contact is the cell's
/// owner (the ACME address of the config).
fn user_agent(settings: &Settings) -> String {
    format!("PIC pic/{} {}", env!("CARGO_PKG_VERSION"), settings.contact)
}

struct Client<'a> {
    http: &'a reqwest::Client,
    agent: String,
}

/// An answer: its status, the seconds of `Retry-After`, its body.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: String,
}

impl Client<'_> {
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, Outcome> {
        // Tokens travel in some providers' URLs: errors are reported without them.
        let response = request
            .header(reqwest::header::USER_AGENT, &self.agent)
            .send()
            .await
            .map_err(|e| Outcome::Failed(format!("the provider did not answer: {}", e.without_url())))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response.text().await.unwrap_or_default();
        Ok(Answer { status, retry_after, body })
    }
}

/// HTTP answers every provider means the same way by: too many requests, a server error.
fn http_trouble(answer: &Answer) -> Option<Outcome> {
    let wait = |default: Duration| answer.retry_after.map(Duration::from_secs).unwrap_or(default);
    match answer.status {
        StatusCode::TOO_MANY_REQUESTS => Some(Outcome::RetryAfter(
            wait(Duration::from_secs(300)),
            "the provider asked to slow down (HTTP 429)".into(),
        )),
        s if s.is_server_error() => Some(Outcome::Failed(format!("the provider had an error (HTTP {})", s.as_u16()))),
        _ => None,
    }
}

fn ip_list(addresses: &Addresses) -> String {
    let mut list: Vec<String> = addresses.ipv4.iter().map(ToString::to_string).collect();
    list.extend(addresses.ipv6.iter().map(ToString::to_string));
    list.join(",")
}

/// dyndns2: `GET /nic/update?hostname=&myip=` with HTTP Basic; one return code per host.
async fn dyndns2(client: &Client<'_>, settings: &Settings, credential: &str, addresses: &Addresses) -> Outcome {
    let user = match settings.provider {
        // pic.ngo: the name is the account, the token its password.
        DdnsProvider::PicNgo => settings.name.as_str(),
        _ => settings.username.as_deref().unwrap_or_default(),
    };
    let url = format!("{}/nic/update", settings.server.trim_end_matches('/'));
    let request = client
        .http
        .get(url)
        .query(&[("hostname", settings.name.as_str()), ("myip", &ip_list(addresses))])
        .basic_auth(user, Some(credential));
    let answer = match client.send(request).await {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if let Some(outcome) = http_trouble(&answer) {
        return outcome;
    }
    if answer.status == StatusCode::UNAUTHORIZED {
        return Outcome::Stop("badauth: the provider refused the username or password".into());
    }
    let code = answer.body.split_whitespace().next().unwrap_or("");
    match code {
        "good" => Outcome::Updated,
        "nochg" => Outcome::Unchanged,
        "badauth" => Outcome::Stop("badauth: the provider refused the username or password".into()),
        "nohost" => Outcome::Stop(format!("nohost: the account has no host {}", settings.name)),
        "notfqdn" => Outcome::Stop(format!("notfqdn: {} is not a name the provider knows", settings.name)),
        "numhost" => Outcome::Stop("numhost: too many hosts in one update".into()),
        "abuse" => Outcome::Stop("abuse: the provider blocked updates for this host".into()),
        "badagent" => Outcome::Stop("badagent: the provider refused this client".into()),
        "!donator" => Outcome::Stop("!donator: the provider wants a paid account for this".into()),
        "!yours" => Outcome::Stop(format!("!yours: {} belongs to another account", settings.name)),
        "911" | "dnserr" => {
            Outcome::RetryAfter(BACK_OFF, format!("{code}: the provider has trouble; trying again in 30 minutes"))
        }
        _ if !answer.status.is_success() => {
            Outcome::Failed(format!("HTTP {}: {}", answer.status.as_u16(), first_line(&answer.body)))
        }
        _ => Outcome::Failed(format!("an answer dyndns2 does not have: {:?}", first_line(&answer.body))),
    }
}

/// DuckDNS: `GET /update?domains=<sub>&token=&ip=&ipv6=&verbose=true`; `OK` or `KO`.
async fn duckdns(client: &Client<'_>, settings: &Settings, credential: &str, addresses: &Addresses) -> Outcome {
    let sub = settings.name.strip_suffix(".duckdns.org").unwrap_or(&settings.name);
    let mut query = vec![("domains", sub.to_owned()), ("token", credential.to_owned()), ("verbose", "true".to_owned())];
    if let Some(v4) = addresses.ipv4 {
        query.push(("ip", v4.to_string()));
    }
    if let Some(v6) = addresses.ipv6 {
        query.push(("ipv6", v6.to_string()));
    }
    let url = format!("{}/update", settings.server.trim_end_matches('/'));
    let answer = match client.send(client.http.get(url).query(&query)).await {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if let Some(outcome) = http_trouble(&answer) {
        return outcome;
    }
    let lines: Vec<&str> = answer.body.lines().map(str::trim).collect();
    match lines.first().copied() {
        Some("OK") if lines.get(3) == Some(&"NOCHANGE") => Outcome::Unchanged,
        Some("OK") => Outcome::Updated,
        Some("KO") => Outcome::Stop(format!("DuckDNS answered KO: the token or the name {sub} is wrong")),
        _ => Outcome::Failed(format!(
            "an answer DuckDNS does not give: HTTP {} {:?}",
            answer.status.as_u16(),
            first_line(&answer.body)
        )),
    }
}

/// FreeDNS, dynamic update v2: `GET /u/<token>/?ip=`, one request per address family.
async fn freedns(client: &Client<'_>, settings: &Settings, credential: &str, addresses: &Addresses) -> Outcome {
    let mut result = Outcome::Unchanged;
    let families = addresses.ipv4.map(|a| a.to_string()).into_iter().chain(addresses.ipv6.map(|a| a.to_string()));
    for address in families {
        let url = format!("{}/u/{credential}/", settings.server.trim_end_matches('/'));
        let answer = match client.send(client.http.get(url).query(&[("ip", &address)])).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        if let Some(outcome) = http_trouble(&answer) {
            return outcome;
        }
        let text = answer.body.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("updated") {
            result = Outcome::Updated;
        } else if lower.contains("no ip change") || lower.contains("has not changed") {
            // Unchanged for this family; another may still update.
        } else if lower.contains("unable to locate") || lower.contains("invalid") {
            return Outcome::Stop(format!("FreeDNS does not know this token: {}", first_line(text)));
        } else {
            return Outcome::Failed(format!(
                "an answer FreeDNS does not give: HTTP {} {:?}",
                answer.status.as_u16(),
                first_line(text)
            ));
        }
    }
    result
}

/// Cloudflare API v4: the zone (looked up once), each record (looked up once), then one PUT per
/// record, or a POST that makes it.
async fn cloudflare(
    client: &Client<'_>,
    settings: &Settings,
    token: &str,
    addresses: &Addresses,
    status: &mut Status,
) -> Outcome {
    let base = settings.server.trim_end_matches('/');
    let zone = match cloudflare_zone(client, settings, token, status).await {
        Ok(zone) => zone,
        Err(outcome) => return outcome,
    };
    let records = [("A", addresses.ipv4.map(|a| a.to_string())), ("AAAA", addresses.ipv6.map(|a| a.to_string()))];
    for (kind, content) in records {
        let Some(content) = content else { continue };
        let cached = if kind == "A" { status.cloudflare.a.clone() } else { status.cloudflare.aaaa.clone() };
        let id = match cached {
            Some(id) => Some(id),
            None => {
                let request = client
                    .http
                    .get(format!("{base}/zones/{zone}/dns_records"))
                    .query(&[("type", kind), ("name", settings.name.as_str())])
                    .bearer_auth(token);
                match cloudflare_call(client, request).await {
                    Ok(result) => result.get(0).and_then(|r| r["id"].as_str()).map(str::to_owned),
                    Err(outcome) => return outcome,
                }
            }
        };
        let body = json!({"type": kind, "name": settings.name, "content": content, "ttl": 1, "proxied": false});
        let request = match &id {
            Some(id) => client.http.put(format!("{base}/zones/{zone}/dns_records/{id}")),
            None => client.http.post(format!("{base}/zones/{zone}/dns_records")),
        };
        match cloudflare_call(client, request.bearer_auth(token).json(&body)).await {
            Ok(result) => {
                let id = result["id"].as_str().map(str::to_owned).or(id);
                if kind == "A" { status.cloudflare.a = id } else { status.cloudflare.aaaa = id }
            }
            Err(outcome) => {
                // A record removed behind the cell's back: looked up again next time.
                if kind == "A" {
                    status.cloudflare.a = None
                } else {
                    status.cloudflare.aaaa = None
                }
                return outcome;
            }
        }
    }
    Outcome::Updated
}

/// The id of Cloudflare's zone holding `settings.name` (the config's zone, else the nearest
/// parent Cloudflare has), looked up once and kept in `status`.
async fn cloudflare_zone(
    client: &Client<'_>,
    settings: &Settings,
    token: &str,
    status: &mut Status,
) -> Result<String, Outcome> {
    if let Some(zone) = &status.cloudflare.zone {
        return Ok(zone.clone());
    }
    let base = settings.server.trim_end_matches('/');
    let candidates: Vec<String> = match &settings.zone {
        Some(zone) => vec![zone.clone()],
        None => parents(&settings.name),
    };
    for candidate in &candidates {
        let request = client.http.get(format!("{base}/zones")).query(&[("name", candidate)]).bearer_auth(token);
        let result = cloudflare_call(client, request).await?;
        if let Some(id) = result.get(0).and_then(|z| z["id"].as_str()) {
            status.cloudflare.zone = Some(id.to_owned());
            return Ok(id.to_owned());
        }
    }
    Err(Outcome::Stop(format!(
        "Cloudflare has no zone holding {} for this token (tried {})",
        settings.name,
        candidates.join(", ")
    )))
}

/// A TXT record published for an ACME DNS-01 challenge, to be removed once it is validated.
#[derive(Debug)]
pub enum TxtRecord {
    /// Cloudflare's zone and record ids.
    Cloudflare { zone: String, id: String },
    /// DuckDNS holds one TXT value per name, cleared with `clear=true`.
    Duckdns,
}

/// What a provider's answer about a TXT record means, in words.
fn txt_failure(outcome: Outcome) -> String {
    match outcome {
        Outcome::Stop(why) | Outcome::Failed(why) | Outcome::RetryAfter(_, why) => why,
        Outcome::Updated | Outcome::Unchanged => "the provider did not take the record".into(),
    }
}

/// Publishes `value` as the TXT record `_acme-challenge.<settings.name>` through the provider's
/// record API (Cloudflare, DuckDNS); other providers have none. `ids` keeps what was looked up
/// (Cloudflare's zone) for the next record of the same order.
pub async fn set_txt(
    settings: &Settings,
    credential: &str,
    value: &str,
    ids: &mut Status,
    http: &Http,
) -> Result<TxtRecord, String> {
    let client = Client { http: &http.any, agent: user_agent(settings) };
    let base = settings.server.trim_end_matches('/');
    match settings.provider {
        DdnsProvider::Cloudflare => {
            let zone = cloudflare_zone(&client, settings, credential, ids).await.map_err(txt_failure)?;
            let body = json!({"type": "TXT", "name": format!("_acme-challenge.{}", settings.name), "content": value, "ttl": 60});
            let request =
                client.http.post(format!("{base}/zones/{zone}/dns_records")).bearer_auth(credential).json(&body);
            let result = cloudflare_call(&client, request).await.map_err(txt_failure)?;
            let id = result["id"].as_str().ok_or("Cloudflare made the TXT record but gave no id")?.to_owned();
            Ok(TxtRecord::Cloudflare { zone, id })
        }
        DdnsProvider::Duckdns => {
            duckdns_txt(&client, settings, credential, &[("txt", value)]).await?;
            Ok(TxtRecord::Duckdns)
        }
        other => Err(format!("{} has no API for TXT records", other.as_str())),
    }
}

/// Removes a TXT record `set_txt` made.
pub async fn clear_txt(settings: &Settings, credential: &str, record: &TxtRecord, http: &Http) -> Result<(), String> {
    let client = Client { http: &http.any, agent: user_agent(settings) };
    let base = settings.server.trim_end_matches('/');
    match record {
        TxtRecord::Cloudflare { zone, id } => {
            let request = client.http.delete(format!("{base}/zones/{zone}/dns_records/{id}")).bearer_auth(credential);
            cloudflare_call(&client, request).await.map(drop).map_err(txt_failure)
        }
        TxtRecord::Duckdns => duckdns_txt(&client, settings, credential, &[("txt", ""), ("clear", "true")]).await,
    }
}

/// DuckDNS's TXT update: `GET /update?domains=<sub>&token=&txt=[&clear=true]&verbose=true`.
async fn duckdns_txt(
    client: &Client<'_>,
    settings: &Settings,
    credential: &str,
    extra: &[(&str, &str)],
) -> Result<(), String> {
    let sub = settings.name.strip_suffix(".duckdns.org").unwrap_or(&settings.name);
    let mut query = vec![("domains", sub), ("token", credential)];
    query.extend_from_slice(extra);
    query.push(("verbose", "true"));
    let url = format!("{}/update", settings.server.trim_end_matches('/'));
    let answer = client.send(client.http.get(url).query(&query)).await.map_err(txt_failure)?;
    if let Some(outcome) = http_trouble(&answer) {
        return Err(txt_failure(outcome));
    }
    match answer.body.lines().next().map(str::trim) {
        Some("OK") => Ok(()),
        Some("KO") => Err(format!("DuckDNS answered KO: the token or the name {sub} is wrong")),
        _ => Err(format!(
            "an answer DuckDNS does not give: HTTP {} {:?}",
            answer.status.as_u16(),
            first_line(&answer.body)
        )),
    }
}

/// One call of Cloudflare's API: its `result`, or what its envelope and status mean.
async fn cloudflare_call(client: &Client<'_>, request: reqwest::RequestBuilder) -> Result<Value, Outcome> {
    let answer = client.send(request).await?;
    if let Some(outcome) = http_trouble(&answer) {
        return Err(outcome);
    }
    let envelope: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    let message = envelope["errors"]
        .get(0)
        .and_then(|e| e["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| first_line(&answer.body).to_owned());
    match answer.status {
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(Outcome::Stop(format!("Cloudflare refused the token (HTTP {}): {message}", answer.status.as_u16())))
        }
        s if s.is_success() && envelope["success"] == true => Ok(envelope["result"].clone()),
        s => Err(Outcome::Failed(format!("Cloudflare answered HTTP {}: {message}", s.as_u16()))),
    }
}

/// `a.b.example.org` → `a.b.example.org`, `b.example.org`, `example.org`: the zones that may
/// hold the name, nearest first (never a bare top-level domain).
fn parents(name: &str) -> Vec<String> {
    let labels: Vec<&str> = name.split('.').collect();
    (0..labels.len().saturating_sub(1)).map(|i| labels[i..].join(".")).collect()
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("").trim();
    &line[..line.len().min(200)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_zones_that_may_hold_a_name() {
        assert_eq!(
            super::parents("cell.home.example.co.uk"),
            ["cell.home.example.co.uk", "home.example.co.uk", "example.co.uk", "co.uk"]
        );
        assert_eq!(super::parents("example.org"), ["example.org"]);
    }
}
