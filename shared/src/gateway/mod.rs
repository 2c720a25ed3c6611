//! Sending to, describing and closing a WebSocket connection: API Gateway's Management API.

mod sdk;

use async_trait::async_trait;
pub use sdk::{DEFAULT_POST_TIMEOUT, SdkGateway};

/// A frame to send: API Gateway sends text when the data is valid UTF-8 and binary otherwise;
/// herald-local follows the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Text),
    Binary(Vec<u8>),
}

/// A text frame's UTF-8, shared: a clone (one push's frame posted to each of thousands of
/// connections) copies nothing.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(bytes::Bytes);

impl Text {
    pub fn as_str(&self) -> &str {
        // SAFETY: a Text is made only from a `String` or a `&str` (below): its bytes are UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The UTF-8 bytes, shared.
    pub fn into_bytes(self) -> bytes::Bytes {
        self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(bytes::Bytes::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(bytes::Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        s.as_str().into()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Frame {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }
}

/// What API Gateway tells of a connection (`GetConnection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub connected_at: Option<String>,
    pub last_active_at: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 410: the connection no longer exists; its records should be deleted.
    #[error("connection {0} is gone")]
    Gone(String),
    /// 429: slow down and retry.
    #[error("throttled by the management API")]
    Throttled,
    /// 413 or 400: the payload can never be sent as it is.
    #[error("payload refused: {0}")]
    PayloadRefused(String),
    /// No answer within the caller's timeout: the frame may or may not have gone out.
    #[error("the management API did not answer in time")]
    Timeout,
    /// Anything else (a 500 or 503, a network failure): may succeed when retried.
    #[error("management API failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl GatewayError {
    /// Whether the same call may succeed later: throttling, a timeout, a server error. A gone
    /// connection and a refused payload never will.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled | Self::Timeout | Self::Other(_))
    }
}

#[async_trait]
pub trait Gateway: Send + Sync {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError>;

    /// A post answered at once, without waiting, by a gateway that can (herald-local's
    /// in-process one, which only queues the frame): the same answer [`Gateway::post`] gives.
    /// `None` when it cannot (a gateway over the network; herald-local with faults to inject):
    /// then nothing was sent, and the caller posts with [`Gateway::post`].
    fn post_now(&self, _connection_id: &str, _frame: &Frame) -> Option<Result<(), GatewayError>> {
        None
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError>;
    async fn close(&self, connection_id: &str) -> Result<(), GatewayError>;
}

/// A failure a [`RecordingGateway`] answers a post with (see [`RecordingGateway::fail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// 429: [`GatewayError::Throttled`], nothing sent.
    Throttled,
    /// 500: [`GatewayError::Other`], nothing sent.
    ServerError,
    /// No answer in time: [`GatewayError::Timeout`], nothing sent.
    Timeout,
    /// The ambiguous timeout: the frame went out (it is recorded as sent) but the caller sees
    /// [`GatewayError::Timeout`].
    TimeoutAfterSend,
    /// 410: [`GatewayError::Gone`], nothing sent (later posts go on as the rules say).
    Gone,
    /// 413: [`GatewayError::PayloadRefused`], nothing sent.
    PayloadRefused,
}

impl Injected {
    fn error(self, connection_id: &str) -> GatewayError {
        match self {
            Self::Throttled => GatewayError::Throttled,
            Self::ServerError => GatewayError::Other("injected: 500 Internal Server Error".into()),
            Self::Timeout | Self::TimeoutAfterSend => GatewayError::Timeout,
            Self::Gone => GatewayError::Gone(connection_id.to_string()),
            Self::PayloadRefused => GatewayError::PayloadRefused("injected: 413".into()),
        }
    }
}

/// Which posts to a connection a rule fails: their 1-based numbers, counting every post to that
/// connection (failed ones too).
#[derive(Debug, Clone)]
struct FailRule {
    connection_id: String,
    from: u32,
    to: u32,
    failure: Injected,
}

/// A gateway that records what was sent, for unit tests of handlers. Posts can be made to fail
/// per connection and per call count ([`RecordingGateway::fail`]), so that tests see the
/// failure paths; [`RecordingGateway::sent`] holds only what really went out.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    sent: std::sync::Mutex<Vec<(String, Frame)>>,
    closed: std::sync::Mutex<Vec<String>>,
    gone: std::sync::Mutex<std::collections::HashSet<String>>,
    rules: std::sync::Mutex<Vec<FailRule>>,
    /// Posts tried per connection, failed ones included.
    posts: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl RecordingGateway {
    /// From now on, posts to this connection answer 410.
    pub fn mark_gone(&self, connection_id: &str) {
        lock(&self.gone).insert(connection_id.to_string());
    }

    /// The posts to `connection_id` whose numbers fall in `posts` (1-based, counting every post
    /// to that connection, failed ones included) answer `failure`: `..=2` the first two, `3..=3`
    /// the third only, `1..` every one. The first matching rule wins; [`mark_gone`] comes first.
    ///
    /// [`mark_gone`]: RecordingGateway::mark_gone
    pub fn fail(&self, connection_id: &str, posts: impl std::ops::RangeBounds<u32>, failure: Injected) {
        use std::ops::Bound;
        let from = match posts.start_bound() {
            Bound::Included(n) => *n,
            Bound::Excluded(n) => n.saturating_add(1),
            Bound::Unbounded => 1,
        };
        let to = match posts.end_bound() {
            Bound::Included(n) => *n,
            Bound::Excluded(n) => n.saturating_sub(1),
            Bound::Unbounded => u32::MAX,
        };
        lock(&self.rules).push(FailRule { connection_id: connection_id.to_string(), from: from.max(1), to, failure });
    }

    /// How many posts to `connection_id` were tried, failed ones included.
    pub fn attempts(&self, connection_id: &str) -> u32 {
        lock(&self.posts).get(connection_id).copied().unwrap_or(0)
    }

    /// What really went out, in order.
    pub fn sent(&self) -> Vec<(String, Frame)> {
        lock(&self.sent).clone()
    }

    pub fn sent_to(&self, connection_id: &str) -> Vec<Frame> {
        lock(&self.sent).iter().filter(|(c, _)| c == connection_id).map(|(_, f)| f.clone()).collect()
    }

    pub fn closed(&self) -> Vec<String> {
        lock(&self.closed).clone()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Gateway for RecordingGateway {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        let n = {
            let mut posts = lock(&self.posts);
            let n = posts.entry(connection_id.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if lock(&self.gone).contains(connection_id) {
            return Err(GatewayError::Gone(connection_id.to_string()));
        }
        let failure =
            lock(&self.rules).iter().find(|r| r.connection_id == connection_id && (r.from..=r.to).contains(&n)).map(|r| r.failure);
        match failure {
            None => {}
            Some(Injected::TimeoutAfterSend) => {
                lock(&self.sent).push((connection_id.to_string(), frame.clone()));
                return Err(GatewayError::Timeout);
            }
            Some(failure) => return Err(failure.error(connection_id)),
        }
        lock(&self.sent).push((connection_id.to_string(), frame.clone()));
        Ok(())
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError> {
        if lock(&self.gone).contains(connection_id) {
            return Err(GatewayError::Gone(connection_id.to_string()));
        }
        Ok(ConnectionInfo { connected_at: None, last_active_at: None, source_ip: None, user_agent: None })
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        lock(&self.closed).push(connection_id.to_string());
        lock(&self.gone).insert(connection_id.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Frame {
        Frame::Text(s.into())
    }

    #[tokio::test]
    async fn the_first_posts_fail_then_later_ones_go_out() {
        let g = RecordingGateway::default();
        g.fail("c7", ..=2, Injected::Throttled);
        assert!(matches!(g.post("c7", &text("a")).await, Err(GatewayError::Throttled)));
        assert!(matches!(g.post("c7", &text("b")).await, Err(GatewayError::Throttled)));
        g.post("c7", &text("c")).await.unwrap();
        // Other connections are not touched by c7's rule.
        g.post("c8", &text("d")).await.unwrap();
        assert_eq!(g.sent_to("c7"), vec![text("c")]);
        assert_eq!(g.sent(), vec![("c7".to_string(), text("c")), ("c8".to_string(), text("d"))]);
        assert_eq!(g.attempts("c7"), 3);
        assert_eq!(g.attempts("c8"), 1);
        assert_eq!(g.attempts("c9"), 0);
    }

    #[tokio::test]
    async fn each_failure_answers_its_error_and_sends_nothing() {
        let g = RecordingGateway::default();
        g.fail("c1", 1.., Injected::ServerError);
        g.fail("c2", 1.., Injected::Timeout);
        g.fail("c3", 1.., Injected::Gone);
        g.fail("c4", 1.., Injected::PayloadRefused);
        let f = text("x");
        let e1 = g.post("c1", &f).await.unwrap_err();
        assert!(matches!(e1, GatewayError::Other(_)) && e1.is_retryable(), "{e1:?}");
        let e2 = g.post("c2", &f).await.unwrap_err();
        assert!(matches!(e2, GatewayError::Timeout) && e2.is_retryable(), "{e2:?}");
        let e3 = g.post("c3", &f).await.unwrap_err();
        assert!(matches!(&e3, GatewayError::Gone(id) if id == "c3") && !e3.is_retryable(), "{e3:?}");
        let e4 = g.post("c4", &f).await.unwrap_err();
        assert!(matches!(e4, GatewayError::PayloadRefused(_)) && !e4.is_retryable(), "{e4:?}");
        // Every one fails again on the next try: `1..` is every post.
        assert!(g.post("c1", &f).await.is_err());
        assert!(g.sent().is_empty(), "{:?}", g.sent());
    }

    #[tokio::test]
    async fn a_rule_can_fail_one_post_in_the_middle() {
        let g = RecordingGateway::default();
        g.fail("c1", 2..3, Injected::ServerError);
        let mut results = Vec::new();
        for _ in 0..4 {
            results.push(g.post("c1", &text("x")).await.is_ok());
        }
        assert_eq!(results, [true, false, true, true]);
        assert_eq!(g.sent_to("c1").len(), 3);
    }

    #[tokio::test]
    async fn an_ambiguous_timeout_sends_but_reports_a_timeout() {
        let g = RecordingGateway::default();
        g.fail("c1", ..=1, Injected::TimeoutAfterSend);
        assert!(matches!(g.post("c1", &text("a")).await, Err(GatewayError::Timeout)));
        g.post("c1", &text("a")).await.unwrap();
        assert_eq!(g.sent_to("c1"), vec![text("a"), text("a")], "the retry makes a duplicate the client must dedupe");
    }

    #[tokio::test]
    async fn gone_connections_answer_410_before_any_rule() {
        let g = RecordingGateway::default();
        g.fail("c1", 1.., Injected::Throttled);
        g.mark_gone("c1");
        assert!(matches!(g.post("c1", &text("a")).await, Err(GatewayError::Gone(_))));
        g.close("c2").await.unwrap();
        assert!(matches!(g.post("c2", &text("a")).await, Err(GatewayError::Gone(_))));
        assert!(matches!(g.describe("c2").await, Err(GatewayError::Gone(_))));
        assert_eq!(g.closed(), vec!["c2".to_string()]);
        assert!(g.sent().is_empty());
    }
}
