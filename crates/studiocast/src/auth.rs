//! `[[auth.token]]`: named control tokens with scopes, and
//! `studiocast token new`, which makes one. The config holds only the
//! SHA-256 of each secret; the secret is printed once, when it is made.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use studiocast_server::{Scope, TokenSpec};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenEntry>,
}

/// One `[[auth.token]]` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it, as the audit trail names it.
    pub name: String,
    /// `sha256:` and the hex SHA-256 of the secret.
    pub hash: String,
    /// Any of "sessions", "jobs", "read", "metrics".
    pub scopes: Vec<String>,
}

impl AuthSection {
    /// The tokens as the server takes them, every key checked.
    pub fn specs(&self) -> Result<Vec<TokenSpec>> {
        let mut out: Vec<TokenSpec> = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("[[auth.token]] #{} ({:?})", i + 1, t.name);
            check_name(&t.name).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            if out.iter().any(|o| o.name == t.name) {
                bail!("{at}: the name is used twice");
            }
            let Some(sha256) = TokenSpec::parse_hash(&t.hash) else {
                bail!("{at}: hash must be \"sha256:\" and 64 hex digits (studiocast token new prints one)");
            };
            if out.iter().any(|o| o.sha256 == sha256) {
                bail!("{at}: the same secret as another token");
            }
            let scopes = parse_scopes(&t.scopes).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            out.push(TokenSpec {
                name: t.name.clone(),
                sha256,
                scopes,
            });
        }
        Ok(out)
    }

    /// [`Self::specs`], and none may share the single `api_token`'s secret
    /// (it would be two names, and two scope sets, for one secret: the
    /// audit trail could not say which was meant).
    pub fn specs_beside(&self, api_token: &str) -> Result<Vec<TokenSpec>> {
        let out = self.specs()?;
        if !api_token.is_empty() {
            let api = TokenSpec::from_secret("api_token", api_token, &[]);
            if let Some(t) = out.iter().find(|t| t.sha256 == api.sha256) {
                bail!(
                    "[[auth.token]] {:?}: the same secret as server.api_token",
                    t.name
                );
            }
        }
        Ok(out)
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        bail!("name must be 1–64 of [A-Za-z0-9._-]");
    }
    if name == "api_token" {
        bail!("name \"api_token\" is the single [server] api_token's");
    }
    Ok(())
}

fn parse_scopes(names: &[String]) -> Result<Vec<Scope>> {
    if names.is_empty() {
        bail!("scopes is empty (any of sessions, jobs, read, metrics)");
    }
    let mut out = Vec::new();
    for n in names {
        match Scope::parse(n) {
            Some(s) if !out.contains(&s) => out.push(s),
            Some(_) => {}
            None => bail!("unknown scope {n:?} (sessions, jobs, read, metrics)"),
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token: prints the secret alone on the first line, then the
    /// `[[auth.token]]` block to append to the config.
    New {
        /// Who will hold it (the audit trail shows this name).
        #[arg(long)]
        name: String,
        /// Comma-separated: sessions, jobs, read, metrics.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
}

pub fn run(a: TokenArgs) -> Result<()> {
    match a.command {
        TokenCommand::New { name, scopes } => {
            let (secret, block) = new_token(&name, &scopes)?;
            println!("{secret}");
            print!("{block}");
            Ok(())
        }
    }
}

/// A new secret (`sct_` and 64 hex digits: 256 random bits) and its
/// config block.
pub fn new_token(name: &str, scopes: &[String]) -> Result<(String, String)> {
    check_name(name)?;
    let scopes = parse_scopes(scopes)?;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let secret = format!(
        "sct_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    );
    let list: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    let block = format!(
        "[[auth.token]]\nname = \"{name}\"\nhash = \"{}\"\nscopes = [{}]\n",
        TokenSpec::hash_text(&secret),
        list.join(", ")
    );
    Ok((secret, block))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_parses_back_as_its_block_says() {
        let (secret, block) = new_token("console", &["read".into(), "sessions".into()]).unwrap();
        assert!(secret.starts_with("sct_") && secret.len() == 68);
        let a: AuthSection = toml::from_str(
            &format!(
                "{block}\n[[token]]\nname=\"x\"\nhash=\"sha256:{}\"\nscopes=[\"metrics\"]\n",
                "0".repeat(64)
            )
            .replace("[[auth.token]]", "[[token]]"),
        )
        .unwrap();
        let specs = a.specs().unwrap();
        assert_eq!(specs[0].name, "console");
        assert_eq!(specs[0].scopes, vec![Scope::Sessions, Scope::Read]);
        assert_eq!(
            specs[0].sha256,
            TokenSpec::parse_hash(&TokenSpec::hash_text(&secret)).unwrap()
        );
        // Two tokens made alike differ.
        assert_ne!(
            new_token("a", &["read".into()]).unwrap().0,
            new_token("a", &["read".into()]).unwrap().0
        );
    }

    #[test]
    fn a_named_token_may_not_reuse_the_api_token() {
        let a: AuthSection = toml::from_str(&format!(
            "[[token]]\nname=\"desk\"\nhash=\"{}\"\nscopes=[\"read\"]\n",
            TokenSpec::hash_text("the-shared-secret-0123456789")
        ))
        .unwrap();
        let e = a.specs_beside("the-shared-secret-0123456789").unwrap_err();
        assert!(e.to_string().contains("server.api_token"), "{e}");
        assert_eq!(
            a.specs_beside("another-secret-0123456789").unwrap().len(),
            1
        );
        assert_eq!(a.specs_beside("").unwrap().len(), 1);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_key() {
        let entry = |name: &str, hash: &str, scopes: &[&str]| TokenEntry {
            name: name.into(),
            hash: hash.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        let good = format!("sha256:{}", "ab".repeat(32));
        let other = format!("sha256:{}", "cd".repeat(32));
        let cases = [
            (vec![entry("", &good, &["read"])], "name"),
            (vec![entry("a b", &good, &["read"])], "name"),
            (vec![entry("api_token", &good, &["read"])], "api_token"),
            (vec![entry("a", "sha1:00", &["read"])], "hash"),
            (vec![entry("a", &good, &[])], "scopes"),
            (vec![entry("a", &good, &["admin"])], "admin"),
            (
                vec![entry("a", &good, &["read"]), entry("a", &other, &["read"])],
                "twice",
            ),
            (
                vec![entry("a", &good, &["read"]), entry("b", &good, &["read"])],
                "same secret",
            ),
        ];
        for (tokens, want) in cases {
            let e = AuthSection { tokens }.specs().unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("[[auth.token]]"),
                "{want}: {e}"
            );
        }
        assert!(new_token("x", &["nope".into()]).is_err());
    }
}
