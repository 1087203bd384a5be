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
    Ok(())
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
