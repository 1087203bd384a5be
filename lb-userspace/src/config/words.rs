//! Config values that are one of a fixed set of words (`forwarding =
//! "nat" | "dr"`, `kind = "http" | ...`): each enum's words are written
//! once, in its [`config_words!`] definition, which gives it `name()`,
//! `Display` (the word) and `FromStr` (the word, exactly: lower case, as
//! the config reference writes it).
//!
//! Parsing here only says "not one of ours" ([`UnknownWord`]); the
//! message a user reads is the caller's, since it knows the key and what
//! each word means ("\"dr\" (ipvsadm -g, direct routing)").
//!
//! Not serde's `rename_all` on the enums themselves: `raw` keeps these
//! values as strings so that a wrong word is reported at its position
//! with our words ("`tun` is not a forwarding method (tunnel mode is not
//! supported)..."), not as serde's "unknown variant".

/// A word that names none of an enum's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{word}` is not one of {}", quoted(.names))]
pub struct UnknownWord {
    pub word: String,
    /// The words that are accepted, in the enum's order.
    pub names: &'static [&'static str],
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Defines an enum whose values are written as words in the config:
/// `Variant = "word"` per value. Attributes (docs, derives, `#[default]`)
/// pass through.
macro_rules! config_words {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every word, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// The word written in the config (and shown by `lb status`).
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $word ),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::config::words::UnknownWord;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $( $word => Ok($name::$variant), )+
                    _ => Err($crate::config::words::UnknownWord {
                        word: s.to_owned(),
                        names: Self::NAMES,
                    }),
                }
            }
        }
    };
}
pub(crate) use config_words;

#[cfg(test)]
mod tests {
    use crate::config::{Forwarding, KindName, LdapTls, Protocol, Scheduler, XdpMode};

    /// Every word parses back to the value that displays it, and the
    /// words of the config reference are the ones accepted.
    #[test]
    fn words_round_trip() {
        fn check<T>(names: &[&str])
        where
            T: std::str::FromStr<Err = super::UnknownWord> + std::fmt::Display,
        {
            for n in names {
                let v: T = n.parse().unwrap();
                assert_eq!(v.to_string(), *n);
            }
        }
        assert_eq!(XdpMode::NAMES, ["auto", "native", "generic"]);
        check::<XdpMode>(XdpMode::NAMES);
        assert_eq!(Protocol::NAMES, ["tcp", "udp"]);
        check::<Protocol>(Protocol::NAMES);
        assert_eq!(Forwarding::NAMES, ["nat", "dr"]);
        check::<Forwarding>(Forwarding::NAMES);
        assert_eq!(Scheduler::NAMES, ["maglev"]);
        check::<Scheduler>(Scheduler::NAMES);
        assert_eq!(LdapTls::NAMES, ["none", "ldaps", "starttls"]);
        check::<LdapTls>(LdapTls::NAMES);
        assert_eq!(KindName::NAMES, ["none", "tcp", "http", "ldap", "exec"]);
        check::<KindName>(KindName::NAMES);
    }

    /// Exact words only: a config written "TCP" or " nat" is refused
    /// rather than guessed, as before.
    #[test]
    fn only_exact_words() {
        for bad in ["TCP", " tcp", "tcp ", "", "tcp6"] {
            let e = bad.parse::<Protocol>().unwrap_err();
            assert_eq!(e.word, bad);
            assert_eq!(
                e.to_string(),
                format!("`{bad}` is not one of \"tcp\", \"udp\"")
            );
        }
    }
}
