//! Why a caller was not let in.

/// Why a token was refused, or why it could not be checked.
///
/// [`AuthError::status`] gives the HTTP status to answer with and [`AuthError::code`] a stable
/// machine-readable code. The `Display` text is safe to show to the caller: it never contains the
/// token, a key or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("no token was presented")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>` (a bare token, `Basic …`).
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    /// The token is not a well-formed JWT (shape, base64, JSON).
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The token's `exp` is in the past (beyond the configured leeway).
    #[error("the token has expired")]
    Expired,
    /// The signature does not match, or no known key can check it.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// The header's `alg` is not the configured algorithm (this includes `none`).
    #[error("the token is not signed with the expected algorithm")]
    WrongAlgorithm,
    /// A required claim is absent.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an out-of-range value.
    #[error("the token's `{0}` claim is invalid")]
    InvalidClaim(&'static str),
    /// The token is valid but does not grant what was asked for.
    #[error("the token does not allow this operation")]
    Forbidden,
    /// The remote auth service (`HERALD_AUTH_VERIFY_URL`) refused the token.
    #[error("the auth service rejected the token")]
    Rejected,
    /// The JWKS or the remote auth service could not be reached or answered unexpectedly.
    #[error("token verification is unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The HTTP status to answer with: 401 for token problems, 403 for [`AuthError::Forbidden`],
    /// 503 for [`AuthError::Unavailable`].
    pub fn status(&self) -> u16 {
        match self {
            Self::Forbidden => 403,
            Self::Unavailable(_) => 503,
            Self::Missing
            | Self::NotBearer
            | Self::Malformed
            | Self::Expired
            | Self::BadSignature
            | Self::WrongAlgorithm
            | Self::MissingClaim(_)
            | Self::InvalidClaim(_)
            | Self::Rejected => 401,
        }
    }

    /// A stable snake_case code for error bodies (`{"error":{"code":…}}`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing | Self::NotBearer => "token_missing",
            Self::Malformed => "token_malformed",
            Self::Expired => "token_expired",
            Self::BadSignature => "token_bad_signature",
            Self::WrongAlgorithm => "token_wrong_algorithm",
            Self::MissingClaim(_) => "token_missing_claim",
            Self::InvalidClaim(_) => "token_invalid_claim",
            Self::Forbidden => "forbidden",
            Self::Rejected => "token_rejected",
            Self::Unavailable(_) => "auth_unavailable",
        }
    }
}
