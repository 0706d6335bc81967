//! Adding and removing exits, shared by the CLI and the API: the provider's keys go into
//! `secrets/`, the rest into the config, and each change is a generation.

use pic_builder::config::{Exit, FieldError, ValidationErrors};
use pic_builder::exits::{ExitSecrets, ProviderFile};
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
        let exit = Exit { name: name.to_owned(), wireguard: Some(file.exit.clone()) };
        match c.connectivity.exits.iter_mut().find(|e| e.name == name) {
            Some(existing) => *existing = exit,
            None => c.connectivity.exits.push(exit),
        }
        Ok(())
    })?;
    ExitSecrets::new(state.secrets().dir()).store(name, &file)?;
    writer.build_and_switch(&config, &format!("exit {name} from a provider's file"))
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
