//! Who the caller is, read from verified claims (CONTRACT §1).

use serde_json::{Map, Value};

use super::AuthError;

/// The scope a publisher (a service allowed to `POST /notify`) must hold.
pub const PUBLISH_SCOPE: &str = "notify:publish";

/// Longest accepted user id, in characters (CONTRACT §1).
const MAX_ID_CHARS: usize = 256;

/// The caller, as told by a verified token.
///
/// All ids are normalised: a JSON number becomes its decimal string, an empty string counts as
/// absent, and ids are 1 to 256 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The notify user: `sub`, else `user_id`. Never `request_id` or `admin_id` (CONTRACT §1).
    pub user_id: Option<String>,
    /// The chat requester (`request_id` claim, seed 001).
    pub request_id: Option<String>,
    /// The operator (`admin_id` claim, seed 001).
    pub admin_id: Option<String>,
    /// An admin: `admin_id` is present, or `role == "admin"`.
    pub admin: bool,
    /// A publisher: `scope` (a space-separated string or an array of strings) contains
    /// `notify:publish`, or the caller is an admin.
    pub publisher: bool,
}

impl Identity {
    /// Reads the identity from a token's (already verified) claims.
    ///
    /// Fails with [`AuthError::InvalidClaim`] when an id claim has the wrong type (not a string or
    /// an integer) or is longer than 256 characters. A token naming nobody is not an error here:
    /// see [`Identity::require_user`].
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, AuthError> {
        let request_id = id_claim(claims, "request_id")?;
        let admin_id = id_claim(claims, "admin_id")?;
        let user_id = match id_claim(claims, "sub")? {
            Some(sub) => Some(sub),
            None => id_claim(claims, "user_id")?,
        };
        let admin = admin_id.is_some() || claims.get("role").and_then(Value::as_str) == Some("admin");
        let publisher = admin || has_scope(claims.get("scope"), PUBLISH_SCOPE);
        Ok(Self { user_id, request_id, admin_id, admin, publisher })
    }

    /// The caller's notify user id (`sub`, else `user_id`).
    ///
    /// Fails with [`AuthError::MissingClaim`]`("sub")` when the token names no user: an
    /// operator's `admin_id` or a requester's `request_id` is not a notify user (CONTRACT §1).
    pub fn require_user(&self) -> Result<&str, AuthError> {
        self.user_id.as_deref().ok_or(AuthError::MissingClaim("sub"))
    }

    /// Who the token names, for the authorizer's `principalId`: the user, else `request:<id>`,
    /// else `admin:<id>`. Fails with [`AuthError::MissingClaim`]`("sub")` when it names nobody.
    pub fn principal(&self) -> Result<String, AuthError> {
        match (&self.user_id, &self.request_id, &self.admin_id) {
            (Some(user), _, _) => Ok(user.clone()),
            (None, Some(request), _) => Ok(format!("request:{request}")),
            (None, None, Some(admin)) => Ok(format!("admin:{admin}")),
            (None, None, None) if self.admin => Ok("admin".into()),
            (None, None, None) => Err(AuthError::MissingClaim("sub")),
        }
    }

    /// Succeeds for admins (`admin_id`, or `role == "admin"`); [`AuthError::Forbidden`] (403) otherwise.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.admin { Ok(()) } else { Err(AuthError::Forbidden) }
    }

    /// Succeeds for publishers (and admins); [`AuthError::Forbidden`] (403) otherwise.
    pub fn require_publisher(&self) -> Result<(), AuthError> {
        if self.publisher { Ok(()) } else { Err(AuthError::Forbidden) }
    }
}

/// An id claim, normalised: strings as they are (blank = absent), integers as decimal strings.
fn id_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<String>, AuthError> {
    let id = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(AuthError::InvalidClaim(name)),
    };
    if id.chars().count() > MAX_ID_CHARS {
        return Err(AuthError::InvalidClaim(name));
    }
    Ok(Some(id))
}

/// Whether a `scope` claim (space-separated string or array of strings) holds `wanted`.
fn has_scope(scope: Option<&Value>, wanted: &str) -> bool {
    match scope {
        Some(Value::String(s)) => s.split_whitespace().any(|s| s == wanted),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(|s| s == wanted),
        _ => false,
    }
}
