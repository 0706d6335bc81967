//! Adding and removing exits, shared by the CLI and the API: the provider's keys go into
//! `secrets/`, the rest into the config, and each change is a generation.

use std::net::Ipv4Addr;

use pic_builder::config::{CellConfig, Exit, FieldError, OpenVpnExit, TorExit, ValidationErrors};
use pic_builder::exits::{ExitSecrets, OpenVpnFile, ProviderFile};
use pic_builder::state::SwitchOutcome;
use pic_builder::{Error, State};

/// Adds the exit `name` from a provider's wg-quick file, or replaces the one of that name (a new
/// file from the provider). The keys are kept only once the config accepts the exit.
pub fn add_wireguard(state: &State, name: &str, file: &str) -> Result<SwitchOutcome, Error> {
    let file = ProviderFile::parse(file).map_err(|errors| {
        // Each problem is the file's: named at the `wireguard` field, with its line.
        Error::Invalid(ValidationErrors(
            errors
                .0
                .into_iter()
                .map(|e| FieldError {
                    path: "wireguard".into(),
                    message: format!("{}: {}", e.path, e.message),
                    hint: e.hint,
                })
                .collect(),
        ))
    })?;
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        let exit = Exit { name: name.to_owned(), wireguard: Some(file.exit.clone()), openvpn: None, tor: None };
        match c.connectivity.exits.iter_mut().find(|e| e.name == name) {
            Some(existing) => *existing = exit,
            None => c.connectivity.exits.push(exit),
        }
        Ok(())
    })?;
    ExitSecrets::new(state.secrets().dir()).store(name, &file)?;
    writer.build_and_switch(&config, &format!("exit {name} from a provider's file"))
}

/// Each problem of a provider's file, named at the field that carried the file, with its line.
fn at_field(field: &str, errors: ValidationErrors) -> Error {
    Error::Invalid(ValidationErrors(
        errors
            .0
            .into_iter()
            .map(|e| FieldError { path: field.into(), message: format!("{}: {}", e.path, e.message), hint: e.hint })
            .collect(),
    ))
}

/// What an OpenVPN exit is added with besides the provider's file.
pub struct OpenVpnInputs<'a> {
    /// The provider's DNS server, asked through the tunnel (providers name it in their guides).
    pub dns: Ipv4Addr,
    /// The user name and password, when the file asks for them (`auth-user-pass`).
    pub credentials: Option<(&'a str, &'a str)>,
}

/// Adds the OpenVPN exit `name` from a provider's `.ovpn` file (or replaces the one of that
/// name): the file and credentials go to secrets/, its container gets a free address on the
/// cell network.
pub fn add_openvpn(state: &State, name: &str, file: &str, inputs: OpenVpnInputs<'_>) -> Result<SwitchOutcome, Error> {
    let file = OpenVpnFile::parse(file).map_err(|errors| at_field("openvpn", errors))?;
    let single = |path: &str, message: &str, hint: &str| Error::Invalid(ValidationErrors::single(path, message, hint));
    match (file.needs_credentials, inputs.credentials) {
        (true, None) => {
            return Err(single(
                "username",
                "the provider's file asks for a user name and password",
                "give the ones of your account with the provider",
            ));
        }
        (false, Some(_)) => {
            return Err(single(
                "username",
                "the provider's file asks for no user name or password (it has no `auth-user-pass`)",
                "leave them out",
            ));
        }
        _ => {}
    }
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        let address = container_address(c, name)?;
        let openvpn = OpenVpnExit { address, remotes: file.remotes.clone(), dns: inputs.dns };
        put(c, Exit { name: name.to_owned(), wireguard: None, openvpn: Some(openvpn), tor: None });
        Ok(())
    })?;
    ExitSecrets::new(state.secrets().dir()).store_openvpn(name, &file, inputs.credentials)?;
    writer.build_and_switch(&config, &format!("exit {name} from a provider's OpenVPN file"))
}

/// Adds the Tor exit `name` (or keeps the one of that name): a container of its own on the
/// cell network.
pub fn add_tor(state: &State, name: &str) -> Result<SwitchOutcome, Error> {
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        let address = container_address(c, name)?;
        put(c, Exit { name: name.to_owned(), wireguard: None, openvpn: None, tor: Some(TorExit { address }) });
        Ok(())
    })?;
    writer.build_and_switch(&config, &format!("exit {name} through Tor"))
}

/// The address of the exit `name`'s container: the one it has, else a free one.
fn container_address(c: &CellConfig, name: &str) -> Result<Ipv4Addr, Error> {
    if let Some(address) = c.connectivity.exits.iter().find(|e| e.name == name).and_then(Exit::container_address) {
        return Ok(address);
    }
    pic_builder::apps::changes::free_address(c).ok_or_else(|| {
        Error::Invalid(ValidationErrors::single(
            "network.subnet",
            "the cell network has no free address for the exit's container",
            "use a larger network.subnet",
        ))
    })
}

/// Puts `exit` into the config, in place of the one of its name.
fn put(c: &mut CellConfig, exit: Exit) {
    match c.connectivity.exits.iter_mut().find(|e| e.name == exit.name) {
        Some(existing) => *existing = exit,
        None => c.connectivity.exits.push(exit),
    }
}

/// Removes the exit `name`, unless devices or users are sent through it.
pub fn remove(state: &State, name: &str) -> Result<SwitchOutcome, Error> {
    let writer = state.writer()?;
    let config = writer.desired_with(|c| {
        if !c.connectivity.exits.iter().any(|e| e.name == name) {
            return Err(Error::NoSuchExit(name.to_owned()));
        }
        let mut users: Vec<String> = c
            .wireguard
            .peers
            .iter()
            .filter(|p| p.exit.as_deref() == Some(name))
            .map(|p| format!("device {}", p.name))
            .collect();
        users.extend(c.users.iter().filter(|u| u.exit.as_deref() == Some(name)).map(|u| format!("user {}", u.name)));
        if !users.is_empty() {
            return Err(Error::ExitInUse { name: name.to_owned(), users: users.join(", ") });
        }
        c.connectivity.exits.retain(|e| e.name != name);
        Ok(())
    })?;
    let switched = writer.build_and_switch(&config, &format!("exit {name} removed"))?;
    ExitSecrets::new(state.secrets().dir()).remove(name)?;
    Ok(switched)
}
