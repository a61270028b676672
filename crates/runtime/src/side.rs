//! A small runtime of an executor's own: its watchers live there, and synchronous code (the
//! engine thread, a start on a thread of its own) runs its requests there without ever blocking
//! a runtime from inside. Shut down without waiting when the executor goes.

/// One worker thread named `thread_name`.
pub struct SideRuntime(Option<tokio::runtime::Runtime>);

impl SideRuntime {
    pub fn new(thread_name: &str) -> std::io::Result<SideRuntime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map(|rt| SideRuntime(Some(rt)))
    }

    pub fn rt(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until drop")
    }

    /// Runs a future to its end from synchronous code, in whatever context that code runs (on a
    /// thread of its own, so that it never blocks a runtime from inside).
    pub fn block_on<F: std::future::Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        let rt = self.rt();
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for SideRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
