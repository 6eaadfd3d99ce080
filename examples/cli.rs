//! Command-line options every example server shares: where to listen and which cores to use.

use std::net::SocketAddr;

use lanes::{Cores, Handler, Server, WorkerInfo};

/// `--addr`, `--cores`, `--core-list`, `--no-pin`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on (every worker binds it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub(crate) addr: SocketAddr,
    /// Number of workers, on the first cores (default: one per core).
    #[arg(long, conflicts_with = "core_list")]
    pub(crate) cores: Option<usize>,
    /// One worker on each of these cores, e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    pub(crate) core_list: Option<Vec<usize>>,
    /// Do not pin workers to their cores.
    #[arg(long)]
    pub(crate) no_pin: bool,
}

impl ServerArgs {
    /// A server on these options.
    pub(crate) fn server<F, H>(&self, factory: F) -> Server<F>
    where
        F: Fn(WorkerInfo) -> H + Send + Clone + 'static,
        H: Handler,
    {
        let cores = match (&self.core_list, self.cores) {
            (Some(list), _) => Cores::List(list.clone()),
            (None, Some(n)) => Cores::Count(n),
            (None, None) => Cores::All,
        };
        Server::new(self.addr, factory)
            .cores(cores)
            .pin(!self.no_pin)
    }
}
