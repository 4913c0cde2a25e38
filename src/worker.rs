//! `weft worker`: runs parts of distributed queries for coordinators (`weft
//! serve --workers`, `weft sql --workers`), reading the data location's files
//! itself (`weft_distributed::serve_worker`).

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Where coordinators reach this worker. It runs any plan it is sent:
    /// keep it on a private network, and set WEFT_WORKER_TOKEN on both ends.
    #[arg(long, default_value = "127.0.0.1:4330")]
    pub listen: String,
    /// The data location the plans read: a directory (the same path on
    /// every machine) or an `s3://bucket/prefix` URL (AWS_* variables).
    #[arg(long)]
    pub data_dir: String,
    /// Memory the parts of queries running here may hold at once.
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub memory_bytes: usize,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let pool = datafusion::execution::memory_pool::FairSpillPool::new(args.memory_bytes);
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()?;
        if let Some(remote) = weft_store::remote_store(&args.data_dir)
            .with_context(|| format!("cannot open {}", args.data_dir))?
        {
            env.register_object_store(&remote.url, remote.store);
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let stop = crate::serve::shutdown_signal();
        crate::print_out(format!(
            "weft worker listening addr={} data_dir={}\n",
            listener.local_addr()?,
            args.data_dir
        ))?;
        let prepare: weft_distributed::Prepare = Arc::new(|ctx| {
            weft_query::register_worker_functions(ctx)
                .map_err(|e| DataFusionError::External(Box::new(e)))
        });
        let token = std::env::var("WEFT_WORKER_TOKEN").ok();
        weft_distributed::serve_worker(
            listener,
            env,
            prepare,
            token,
            weft_listen::ListenLimits::default(),
            stop,
        )
        .await?;
        Ok(())
    })
}
