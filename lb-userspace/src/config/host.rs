//! Checks of a parsed config against the machine it is about to run on.
//!
//! Kept apart from parsing so `lb check` on a build host, and the tests,
//! can parse configs that name interfaces this machine does not have;
//! `lb check` and `lb run` call [`validate_host`] after [`parse`](super::parse).

use std::path::Path;

use super::{Config, ConfigError};

/// Every configured interface exists (`/sys/class/net/<name>`): XDP's
/// and each VRRP instance's.
pub fn validate_host(config: &Config) -> Result<(), ConfigError> {
    validate_host_in(config, Path::new("/sys/class/net"))
}

fn validate_host_in(config: &Config, sys_class_net: &Path) -> Result<(), ConfigError> {
    for (i, name) in config.agent.interfaces.iter().enumerate() {
        if sys_class_net.join(name).exists() {
            continue;
        }
        let at = config
            .sources
            .interfaces
            .get(i)
            .cloned()
            .unwrap_or_default();
        return Err(at.error(
            &format!("agent.interfaces[{i}]"),
            format_args!(
                "interface `{name}` does not exist on this host: name one listed by \
                 `ip link` (in the network namespace lb runs in)"
            ),
        ));
    }
    for (i, vi) in config.vrrp_instances.iter().enumerate() {
        if sys_class_net.join(&vi.interface).exists() {
            continue;
        }
        let at = config
            .sources
            .vrrp_interfaces
            .get(i)
            .cloned()
            .unwrap_or_default();
        return Err(at.error(
            &format!("vrrp_instance[{i}].interface"),
            format_args!(
                "interface `{}` does not exist on this host: name one listed by `ip link` \
                 (in the network namespace lb runs in)",
                vi.interface
            ),
        ));
    }
    exec_programs(config)
}

/// Every exec check's program exists and is executable here: otherwise
/// the check would only fail at every interval, marking its real servers
/// down with a log line, where `lb check` can say it before the start.
/// A host check, like the interfaces: the program is on the machine lb
/// runs on, not where the config is written.
fn exec_programs(config: &Config) -> Result<(), ConfigError> {
    use super::CheckKind;
    for (i, vs) in config.virtual_servers.iter().enumerate() {
        let service = std::iter::once((
            format!("virtual_server[{i}].health_check"),
            &vs.health_check,
        ));
        let reals = vs.real_servers.iter().enumerate().map(|(j, rs)| {
            (
                format!("virtual_server[{i}].real_server[{j}].health_check"),
                &rs.health_check,
            )
        });
        for (field, hc) in service.chain(reals) {
            let CheckKind::Exec(exec) = &hc.kind else {
                continue;
            };
            let Some(program) = exec.command.first() else {
                continue;
            };
            if let Err(why) = executable(program) {
                return Err(super::error::Location::default().error(
                    &format!("{field}.command[0]"),
                    format_args!("`{program}` {why}: install it or name the right path"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `program` (a path, or a name looked up in PATH as the check
/// runs it) names an executable regular file.
fn executable(program: &str) -> Result<(), &'static str> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        return match std::fs::metadata(path) {
            Err(_) => Err("does not exist on this host"),
            Ok(_) if !is_exec(path) => Err("is not an executable file"),
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| is_exec(&dir.join(program))) {
        Ok(())
    } else {
        Err("is not an executable found in PATH")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[agent]
interfaces = ["lo", "lb-no-such-if0"]
"#;

    #[test]
    fn missing_interface_is_named_with_its_position() {
        let config = crate::config::parse(CONFIG, "lb.toml").unwrap();
        let err = validate_host(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            "lb.toml:3:21: field `agent.interfaces[1]`: interface `lb-no-such-if0` does not \
             exist on this host: name one listed by `ip link` (in the network namespace lb runs in)"
        );
    }

    #[test]
    fn missing_vrrp_interface_is_named_with_its_position() {
        let text = "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"lb-no-such-if1\"\n\
                    virtual_router_id = 51\nvirtual_addresses = [\"10.0.0.10\"]\n";
        let config = crate::config::parse(text, "lb.toml").unwrap();
        let err = validate_host(&config).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "lb.toml:3:13: field `vrrp_instance[0].interface`: interface `lb-no-such-if1` \
                 does not exist on this host"
            ),
            "{err}"
        );
        let ok = crate::config::parse(&text.replace("lb-no-such-if1", "lo"), "t").unwrap();
        validate_host(&ok).unwrap();
    }

    #[test]
    fn present_interfaces_pass() {
        let config = crate::config::parse("[agent]\ninterfaces = [\"lo\"]\n", "t").unwrap();
        validate_host(&config).unwrap();
    }
}
