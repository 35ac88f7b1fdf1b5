//! `repricer serve`: start-up (admin port, recovery, actors, API), and graceful shutdown.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use actix::Arbiter;
use actix_web::{middleware::from_fn, web, App, HttpServer};
use repricer_actors::health::Health;
use repricer_actors::metrics::Metrics;
use repricer_actors::segment::data_dir::DataDir;
use repricer_actors::segment::recovery::recover;
use repricer_actors::system::{ActorSystem, StorageThreads};
use tokio::signal::unix::{signal, SignalKind};
use tracing_actix_web::TracingLogger;

use crate::config::ServeConfig;
use crate::http::admin::AdminState;
use crate::http::admission::Admission;
use crate::http::metrics::HttpMetrics;
use crate::http::{self, ApiState};
use crate::telemetry::{self, ServerSpan, Telemetry};

/// Why the service could not start; `main` prints it in one line and exits 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory is unusable.
    #[error(transparent)]
    Storage(#[from] repricer_actors::error::StorageError),
}

/// Runs the service until SIGTERM/SIGINT; returns once everything acknowledged is sealed.
pub async fn run(config: ServeConfig, telemetry: Arc<Telemetry>) -> Result<(), StartError> {
    tracing::info!(?config, exporter = %telemetry.exporter, "starting repricer");
    let health = Arc::new(Health::default());
    let metrics = Metrics::new();
    let http_metrics = HttpMetrics::register(&metrics.registry);
    telemetry.export_metrics.register(&metrics.registry).expect("register the span export metrics");

    // Bind the API port before touching the data directory: a port conflict fails fast, and
    // no connection is accepted before the actors exist (they wait in the backlog; readiness
    // keeps load balancers away until recovery is done).
    let api_listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind { addr: config.listen, source })?;
    // A signal during recovery stops the process at once: nothing has been acknowledged yet,
    // and recovery is safe to interrupt (it only writes with write-then-rename).
    let (signalled, shutdown) = tokio::sync::oneshot::channel::<()>();
    let restored = Arc::clone(&health);
    actix_web::rt::spawn(async move {
        wait_for_signal().await;
        if !restored.is_ready() {
            eprintln!("repricer: signal during start-up; exiting");
            std::process::exit(0);
        }
        let _ = signalled.send(());
    });

    let admin_state = AdminState { health: Arc::clone(&health), registry: metrics.registry.clone() };
    let admin = HttpServer::new(move || App::new().app_data(web::Data::new(admin_state.clone())).configure(http::admin::routes))
        .workers(1)
        .disable_signals()
        .bind(config.admin_listen)
        .map_err(|source| StartError::Bind { addr: config.admin_listen, source })?;
    for addr in admin.addrs() {
        tracing::info!("repricer admin listening on {addr}");
    }
    let admin = admin.run();
    let admin_handle = admin.handle();
    actix_web::rt::spawn(admin);

    let started = Instant::now();
    let data_dir = config.data_dir.clone();
    let window = config.window;
    let (dir, recovered) = web::block(move || -> Result<_, StartError> {
        let dir = DataDir::open(&data_dir)?;
        let recovered = recover(&dir, window)?;
        Ok((dir, recovered))
    })
    .await
    .expect("recovery thread panicked")?;
    let stats = recovered.stats.clone();
    metrics.recovery_seconds.set(started.elapsed().as_secs_f64());
    tracing::info!(
        checkpoint_segments = stats.checkpoint_segments,
        segments = stats.segments,
        events = stats.events,
        wal_events = stats.wal_events,
        torn_bytes = stats.torn_bytes,
        quarantined = stats.quarantined.len(),
        products = recovered.prices.len(),
        next_seq = recovered.start.next_seq,
        seconds = stats.duration.as_secs_f64(),
        "recovery finished"
    );
    let system_config = config.system();
    let storage = StorageThreads::start(&system_config, dir, recovered.catalog, Arc::clone(&health), metrics.clone());

    let reprice_admission = Admission::new("reprice", config.reprice_max_inflight, http_metrics.rejections.clone());
    let product_admission = Admission::new("product", config.product_max_inflight, http_metrics.rejections.clone());
    let query_admission = Admission::new("query", config.query_max_inflight, http_metrics.rejections.clone());
    let (write_timeout, api_health, actor_health, actor_metrics) = (config.write_timeout, Arc::clone(&health), Arc::clone(&health), metrics.clone());
    let (registry_depth, planner_depth) = (metrics.depth("ProductRegistry"), metrics.depth("QueryPlanner"));
    // A worker on a thread other than the actors' gets a QueryPlanner of its own, so pages
    // answered from memory are planned on every worker thread.
    let api_state = move |actors: &ActorSystem, own_planner: bool| ApiState {
        registry: actors.registry.clone(),
        planner: if own_planner { actors.start_planner() } else { actors.planner.clone() },
        health: Arc::clone(&api_health),
        reprice_admission: reprice_admission.clone(),
        product_admission: product_admission.clone(),
        query_admission: query_admission.clone(),
        write_timeout,
        registry_depth: registry_depth.clone(),
        planner_depth: planner_depth.clone(),
    };
    // With one HTTP worker (the default) the actors start on that worker's arbiter when it builds
    // its app, so a request never crosses a thread on its way through the actors. With several,
    // they get an arbiter of their own: a worker's arbiter stops as soon as that worker has
    // drained, while the others may still be serving requests.
    let restored = Arc::new(Mutex::new(Some((recovered.prices, recovered.start))));
    let actors: Arc<OnceLock<ActorSystem>> = Arc::new(OnceLock::new());
    let storage = Arc::new(storage);
    let worker_storage = Arc::clone(&storage);
    let start_actors = move || {
        let (prices, start) = restored.lock().expect("restored state lock").take().expect("actors start once");
        tracing::info!(thread = std::thread::current().name().unwrap_or("?"), "starting the actors");
        ActorSystem::start(&system_config, &worker_storage, prices, start, Arc::clone(&actor_health), actor_metrics.clone())
    };
    let workers = match config.http_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if workers > 1 {
        let (started, wait) = tokio::sync::oneshot::channel();
        let (cell, start) = (Arc::clone(&actors), start_actors.clone());
        Arbiter::new().spawn_fn(move || {
            cell.get_or_init(start);
            let _ = started.send(());
        });
        let _ = wait.await;
    }
    let mut api = HttpServer::new(move || {
        let state = api_state(actors.get_or_init(&start_actors), workers > 1);
        App::new()
            .app_data(web::Data::new(state))
            .app_data(web::Data::new(http_metrics.clone()))
            .wrap(from_fn(http::metrics::record))
            .wrap(from_fn(telemetry::traceparent))
            .wrap(TracingLogger::<ServerSpan>::new())
            .configure(http::routes)
            .default_service(web::to(http::no_route))
    })
    .disable_signals()
    .backlog(4096)
    .shutdown_timeout(config.drain_timeout.as_secs().max(1));
    api = api.workers(workers);
    let api = api.listen(api_listener).map_err(|source| StartError::Bind { addr: config.listen, source })?;
    for addr in api.addrs() {
        tracing::info!("repricer api listening on {addr}");
    }
    let api = api.run();
    let api_handle = api.handle();
    let api_task = actix_web::rt::spawn(api);
    health.mark_restored();
    tracing::info!("ready");

    let _ = shutdown.await;
    tracing::info!("shutdown signal: draining in-flight requests");
    health.mark_draining();
    actix_web::rt::spawn(async {
        let signo = wait_for_signal().await;
        eprintln!("repricer: second signal, exiting at once (every acknowledged event is already durable)");
        // The shell's convention for death by a signal: 143 after SIGTERM, 130 after SIGINT.
        std::process::exit(128 + signo);
    });
    api_handle.stop(true).await;
    let _ = api_task.await;
    storage.seal_and_stop().await;
    tracing::info!("open window sealed; writing checkpoint");
    storage.checkpoint_now().await;
    tracing::info!("checkpoint written; flushing spans");
    admin_handle.stop(true).await;
    let t = Arc::clone(&telemetry);
    let _ = web::block(move || t.shutdown()).await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT; returns its number.
async fn wait_for_signal() -> i32 {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => 15, // SIGTERM
        _ = int.recv() => 2, // SIGINT
    }
}
