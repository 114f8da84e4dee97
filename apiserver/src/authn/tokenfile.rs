//! `--token-auth-file`: static bearer tokens, `token,user,uid[,"group1,group2"]` lines
//! as upstream's `tokenfile.NewCSV` reads them.

use std::collections::HashMap;
use std::path::Path;

use super::{AuthnError, TokenAuthenticator, UserInfo};

/// The static token authenticator: `token,user,uid[,"group1,group2"]` lines.
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

/// Splits one CSV line (quoted fields may hold commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

impl TokenFile {
    /// Reads a token file as upstream's `tokenfile.NewCSV`.
    pub fn load(path: &Path) -> Result<Self, AuthnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthnError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the file's text.
    pub fn parse(text: &str, path: &str) -> Result<Self, AuthnError> {
        let mut tokens = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f = csv_fields(line);
            if f.len() < 3 {
                return Err(AuthnError::Columns {
                    path: path.to_owned(),
                    found: f.len(),
                });
            }
            let groups: Vec<String> = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                f[0].clone(),
                UserInfo {
                    name: f[1].clone(),
                    uid: f[2].clone(),
                    groups,
                    ..Default::default()
                },
            );
        }
        Ok(Self { tokens })
    }

    /// The user a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

impl TokenAuthenticator for TokenFile {
    fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        Ok(self.authenticate(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let f =
            TokenFile::parse("t1,admin,1,\"system:masters,dev\"\n# c\nt2,bob,2\n", "f").unwrap();
        let a = f.authenticate("t1").unwrap();
        assert_eq!(a.name, "admin");
        assert_eq!(a.groups, vec!["system:masters", "dev"]);
        assert_eq!(f.authenticate("t2").unwrap().groups, Vec::<String>::new());
        assert!(f.authenticate("nope").is_none());
        assert!(TokenFile::parse("t,a\n", "f").is_err());
    }
}
