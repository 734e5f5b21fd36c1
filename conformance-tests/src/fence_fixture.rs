//! What a backend hands the fence tier: a fence, optionally the same fence with its store down,
//! and whatever must outlive the case.

use std::any::Any;
use std::sync::Arc;

use fencelock_core::Fence;

/// A fence under test.
pub struct FenceFixture {
    fence: Arc<dyn Fence>,
    dead: Option<Arc<dyn Fence>>,
    keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl FenceFixture {
    /// A fixture over `fence`.
    pub fn new(fence: impl Fence + 'static) -> Self {
        Self::from_arc(Arc::new(fence))
    }

    /// A fixture over a shared fence.
    pub fn from_arc(fence: Arc<dyn Fence>) -> Self {
        Self {
            fence,
            dead: None,
            keep: Vec::new(),
        }
    }

    /// The same kind of fence, pointed at a store that is down (a stopped server, a port nothing
    /// listens on), for `fence_dead_store_never_accepted`.
    pub fn with_dead(mut self, dead: impl Fence + 'static) -> Self {
        self.dead = Some(Arc::new(dead));
        self
    }

    /// Keeps `value` (a server handle, say) alive for as long as the case runs.
    pub fn keep_alive(mut self, value: impl Any + Send + Sync) -> Self {
        self.keep.push(Box::new(value));
        self
    }
}

/// One fence case's view: the fixture plus a random key prefix, so cases never share keys.
pub struct FenceCtx {
    fixture: FenceFixture,
    prefix: String,
}

impl FenceCtx {
    /// Wraps a fixture with a fresh random prefix.
    pub fn new(fixture: FenceFixture) -> Self {
        let prefix = format!("fl-fence/{:016x}/", rand::random::<u64>());
        Self { fixture, prefix }
    }

    /// The fence under test.
    pub fn fence(&self) -> &Arc<dyn Fence> {
        &self.fixture.fence
    }

    /// The fence with its store down, if the fixture has one.
    pub fn dead(&self) -> Option<&Arc<dyn Fence>> {
        self.fixture.dead.as_ref()
    }

    /// `suffix` under this case's prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}
