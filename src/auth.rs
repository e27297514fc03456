//! Access control: bearer tokens, each with a role.
//!
//! The operator lists tokens in a file (`--auth-tokens`), one `TOKEN ROLE`
//! pair per line. A client sends `authorization: Bearer TOKEN` metadata; the
//! [`RequireRole`] wrapper in front of a gRPC service looks the token up and
//! answers UNAUTHENTICATED (no or unknown token) or PERMISSION_DENIED (a role
//! below what the method needs) before the service sees the call.
//!
//! Tokens are never kept, compared or logged as text: the table holds their
//! SHA-256 digests, and a lookup compares the caller's digest with every
//! entry in constant time, without stopping at a match, so neither the time
//! taken nor the log says which token (or how much of one) was right.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::Status;

/// What a token may do. Roles are ordered: each may do what the ones
/// below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Queries and Subscribe.
    Reader = 1,
    /// A reader that may also Append.
    Writer = 2,
    /// A writer that may also run operations (no admin-only RPC exists yet).
    Admin = 3,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    fn from_code(code: u8) -> Option<Role> {
        match code {
            1 => Some(Role::Reader),
            2 => Some(Role::Writer),
            3 => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The role each method of `annals.v1.TimelineService` needs: Append
/// writes, everything else reads.
pub fn timeline_role(path: &str) -> Role {
    if path == "/annals.v1.TimelineService/Append" {
        Role::Writer
    } else {
        Role::Reader
    }
}

/// The role reflection needs when it asks for a token at all.
pub fn reflection_role(_path: &str) -> Role {
    Role::Reader
}

/// The configured tokens, as digests. Its `Debug` shows only how many.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<([u8; 32], Role)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// Reads a token file; an error names the file and the line.
    pub fn load(path: &Path) -> Result<Tokens> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Error::invalid("auth-tokens", format!("{}: {error}", path.display()))
        })?;
        Tokens::parse(&text).map_err(|message| {
            Error::invalid("auth-tokens", format!("{}: {message}", path.display()))
        })
    }

    /// Parses `TOKEN ROLE` lines; `#` starts a comment line, blank lines
    /// are skipped. Unknown roles, missing tokens, extra words, duplicate
    /// tokens and a file without tokens are errors naming the line. No
    /// message quotes a token.
    pub fn parse(text: &str) -> std::result::Result<Tokens, String> {
        let mut entries: Vec<([u8; 32], Role)> = Vec::new();
        let mut first_line: Vec<usize> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let (token, role) = match words.as_slice() {
                [token, role] => (*token, *role),
                [word] if Role::parse(word).is_some() => {
                    return Err(format!(
                        "line {number}: missing token before role {word}; write `TOKEN ROLE`"
                    ))
                }
                [_] => {
                    return Err(format!(
                        "line {number}: missing role; write `TOKEN ROLE` (role: reader, writer or admin)"
                    ))
                }
                _ => {
                    return Err(format!(
                        "line {number}: {} words; write `TOKEN ROLE`, one pair per line",
                        words.len()
                    ))
                }
            };
            let role = Role::parse(role).ok_or_else(|| {
                format!(
                    "line {number}: unknown role {role:?}; the roles are reader, writer and admin"
                )
            })?;
            if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(format!(
                    "line {number}: the token has characters other than printable ASCII, which cannot be sent as gRPC metadata"
                ));
            }
            let digest = digest(token.as_bytes());
            if let Some(earlier) = entries.iter().position(|(known, _)| *known == digest) {
                return Err(format!(
                    "line {number}: duplicate token (first given on line {})",
                    first_line[earlier]
                ));
            }
            entries.push((digest, role));
            first_line.push(number);
        }
        if entries.is_empty() {
            return Err("no tokens; write one `TOKEN ROLE` pair per line".into());
        }
        Ok(Tokens { entries })
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role of a token, in time independent of which entry matches:
    /// every entry is compared, in constant time, and none ends the loop.
    pub fn role_of(&self, token: &[u8]) -> Option<Role> {
        let presented = digest(token);
        let mut found = Choice::from(0);
        let mut code = 0u8;
        for (known, role) in &self.entries {
            let same = known.ct_eq(&presented);
            code.conditional_assign(&(*role as u8), same);
            found |= same;
        }
        if bool::from(found) {
            Role::from_code(code)
        } else {
            None
        }
    }

    /// Decides a call: the caller's role if it has `needed` or more, else
    /// UNAUTHENTICATED (no usable token) or PERMISSION_DENIED.
    pub fn authorize(
        &self,
        headers: &http::HeaderMap,
        method: &str,
        needed: Role,
    ) -> std::result::Result<Role, Status> {
        let Some(token) = bearer(headers) else {
            return Err(Status::unauthenticated(
                "this server requires a token: send `authorization: Bearer TOKEN` metadata",
            ));
        };
        let Some(role) = self.role_of(token) else {
            return Err(Status::unauthenticated(
                "the bearer token is not known to this server",
            ));
        };
        if role < needed {
            return Err(Status::permission_denied(format!(
                "{method} needs the {needed} role; this token's role is {role}"
            )));
        }
        Ok(role)
    }
}

/// The token of an `authorization: Bearer TOKEN` header (scheme in any case).
fn bearer(headers: &http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|byte| *byte == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// A gRPC service that answers only callers whose token has the role its
/// `needs` function asks for the method. The caller's `Role` goes into the
/// request's extensions for the service to read.
#[derive(Clone)]
pub struct RequireRole<S> {
    inner: S,
    tokens: Arc<Tokens>,
    needs: fn(&str) -> Role,
}

impl<S> RequireRole<S> {
    pub fn new(inner: S, tokens: Arc<Tokens>, needs: fn(&str) -> Role) -> RequireRole<S> {
        RequireRole {
            inner,
            tokens,
            needs,
        }
    }
}

impl<S: NamedService> NamedService for RequireRole<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for RequireRole<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = path.rsplit('/').next().unwrap_or(path).to_string();
        let needed = (self.needs)(path);
        match self.tokens.authorize(request.headers(), &method, needed) {
            Ok(role) => {
                request.extensions_mut().insert(role);
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::debug!(%method, code = ?status.code(), "call refused by access control");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn parses_pairs_comments_and_blank_lines() {
        let tokens = Tokens::parse(
            "# the ops team\n\nr-token reader\n  w-token\twriter  \n# more\na-token admin\n",
        )
        .unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.role_of(b"r-token"), Some(Role::Reader));
        assert_eq!(tokens.role_of(b"w-token"), Some(Role::Writer));
        assert_eq!(tokens.role_of(b"a-token"), Some(Role::Admin));
        assert_eq!(tokens.role_of(b"r-toke"), None);
        assert_eq!(tokens.role_of(b""), None);
    }

    #[test]
    fn malformed_files_name_the_line_and_never_the_token() {
        let cases = [
            ("ok reader\nsecret root\n", "line 2: unknown role \"root\""),
            (
                "ok reader\n\nwriter\n",
                "line 3: missing token before role writer",
            ),
            ("secret\n", "line 1: missing role"),
            ("secret reader extra\n", "line 1: 3 words"),
            (
                "secret reader\nother writer\nsecret admin\n",
                "line 3: duplicate token (first given on line 1)",
            ),
            ("# nothing\n\n", "no tokens"),
            (
                "sécret reader\n",
                "line 1: the token has characters other than printable ASCII",
            ),
        ];
        for (text, expected) in cases {
            let error = Tokens::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(
                !error.contains("secret") && !error.contains("sécret"),
                "{error}"
            );
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Admin);
        assert_eq!(
            timeline_role("/annals.v1.TimelineService/Append"),
            Role::Writer
        );
        assert_eq!(
            timeline_role("/annals.v1.TimelineService/GetEntity"),
            Role::Reader
        );
        assert_eq!(
            timeline_role("/annals.v1.TimelineService/Subscribe"),
            Role::Reader
        );
    }

    #[test]
    fn authorizes_by_bearer_token_and_role() {
        let tokens = Tokens::parse("r reader\nw writer\n").unwrap();
        let code = |headers: &http::HeaderMap, needed| {
            tokens
                .authorize(headers, "Append", needed)
                .map_err(|status| status.code())
        };
        assert_eq!(code(&headers("Bearer w"), Role::Writer), Ok(Role::Writer));
        assert_eq!(code(&headers("bearer  w "), Role::Writer), Ok(Role::Writer));
        assert_eq!(code(&headers("Bearer r"), Role::Reader), Ok(Role::Reader));
        assert_eq!(
            code(&headers("Bearer r"), Role::Writer),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(&headers("Bearer x"), Role::Reader),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&headers("Basic w"), Role::Reader),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&headers("Bearer "), Role::Reader),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&http::HeaderMap::new(), Role::Reader),
            Err(tonic::Code::Unauthenticated)
        );
        let denied = tokens
            .authorize(&headers("Bearer r"), "Append", Role::Writer)
            .unwrap_err();
        assert_eq!(
            denied.message(),
            "Append needs the writer role; this token's role is reader"
        );
    }

    #[test]
    fn debug_shows_no_digests() {
        let tokens = Tokens::parse("secret admin\n").unwrap();
        assert_eq!(format!("{tokens:?}"), "Tokens(1 configured)");
    }
}
