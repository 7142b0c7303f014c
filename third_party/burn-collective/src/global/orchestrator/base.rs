use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::Mutex;

use crate::global::{
    orchestrator::state::GlobalCollectiveState,
    shared::{CollectiveMessage, GlobalCollectiveError, SessionId},
};
use burn_communication::{
    CommunicationChannel, Message, ProtocolServer, util::os_shutdown_signal, websocket::WsServer,
};
use tokio_util::sync::CancellationToken;

/// The global collective state manages collective operations on the global level
#[derive(Clone)]
pub(crate) struct GlobalOrchestrator {
    state: Arc<Mutex<GlobalCollectiveState>>,
}

impl GlobalOrchestrator {
    /// Starts the comms server with two routes: "/request" and "/response"
    pub(crate) async fn start<F, S: ProtocolServer + Debug>(
        shutdown_signal: F,
        comms_server: S,
    ) -> Result<(), GlobalCollectiveError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = GlobalCollectiveState::new();
        let server = Self {
            state: Arc::new(tokio::sync::Mutex::new(state)),
        };
        server.serve(shutdown_signal, comms_server).await
    }

    async fn serve<F, S: ProtocolServer + Debug>(
        self,
        shutdown_signal: F,
        comms_server: S,
    ) -> Result<(), GlobalCollectiveError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let server = self;
        comms_server
            .route("/response", {
                let server = server.clone();
                async move |socket| {
                    if let Err(err) = server.handle_socket_response::<S>(socket).await {
                        log::error!("[Response Handler] Error: {err:?}")
                    }
                }
            })
            .route("/request", {
                let server = server.clone();
                async move |socket| {
                    if let Err(err) = server.handle_socket_request::<S>(socket).await {
                        log::error!("[Request Handler] Error: {err:?}")
                    }
                }
            })
            .serve(shutdown_signal)
            .await
            .map_err(|err| GlobalCollectiveError::Server(format!("{err:?}")))?;

        Ok(())
    }

    async fn handle_socket_response<S: ProtocolServer>(
        self,
        mut stream: S::Channel,
    ) -> Result<(), GlobalCollectiveError> {
        log::info!("[Response Handler] On new connection.");

        let msg = stream
            .recv()
            .await
            .map_err(|err| GlobalCollectiveError::Server(format!("{err:?}")))?;
        let Some(msg) = msg else {
            log::warn!("Response socket closed early!");
            return Ok(());
        };

        let msg = rmp_serde::from_slice::<CollectiveMessage>(&msg.data)
            .map_err(|_| GlobalCollectiveError::InvalidMessage)?;

        let CollectiveMessage::Init(id) = msg else {
            return Err(GlobalCollectiveError::FirstMsgNotInit);
        };

        let mut receiver = {
            let mut state = self.state.lock().await;
            state.get_session_responder(id)
        };

        while let Some(response) = receiver.recv().await {
            let bytes = rmp_serde::to_vec(&response).unwrap();

            stream.send(Message::new(bytes.into())).await?;
        }

        log::info!("[Response Handler] Closing connection.");
        Ok(())
    }

    async fn handle_socket_request<S: ProtocolServer>(
        self,
        mut stream: S::Channel,
    ) -> Result<(), GlobalCollectiveError> {
        log::info!("[Request Handler] On new connection.");

        let mut session_id = None;
        let result = self.serve_requests::<S>(&mut stream, &mut session_id).await;
        // strata patch: a node whose connection closed (it finished, or its process died) is
        // forgotten, so that it cannot hold a later run's registration.
        if let Some(id) = session_id {
            self.state.lock().await.drop_session(id);
        }
        result
    }

    async fn serve_requests<S: ProtocolServer>(
        &self,
        stream: &mut S::Channel,
        session_id: &mut Option<SessionId>,
    ) -> Result<(), GlobalCollectiveError> {
        loop {
            let packet = stream.recv().await?;
            let Some(msg) = packet else {
                log::info!("Peer closed the connection");
                break;
            };

            let mut state = self.state.lock().await;

            let msg = rmp_serde::from_slice::<CollectiveMessage>(&msg.data)
                .map_err(|_| GlobalCollectiveError::InvalidMessage)?;
            match msg {
                CollectiveMessage::Init(id) => {
                    state.init_session(id);
                    *session_id = Some(id);
                }
                CollectiveMessage::Request(request_id, remote_request) => {
                    let session_id = session_id.ok_or(GlobalCollectiveError::FirstMsgNotInit)?;
                    state
                        .process_request(session_id, request_id, remote_request)
                        .await;
                }
            }
        }

        Ok(())
    }
}

/// strata patch: a running orchestrator (see [`spawn_global_orchestrator`]); dropping it stops
/// the orchestrator.
pub struct OrchestratorHandle {
    runtime: Option<tokio::runtime::Runtime>,
    state: Arc<Mutex<GlobalCollectiveState>>,
    shutdown: CancellationToken,
}

impl OrchestratorHandle {
    /// How many nodes are registered now (a node leaves on `finish_collective`, or when its
    /// connection closes).
    pub fn registered_nodes(&self) -> usize {
        let runtime = self.runtime.as_ref().expect("running until dropped");
        runtime.block_on(async { self.state.lock().await.registered() })
    }

    /// How many node registrations were made since the start (a run of N nodes makes N).
    pub fn registrations(&self) -> u64 {
        let runtime = self.runtime.as_ref().expect("running until dropped");
        runtime.block_on(async { self.state.lock().await.registrations() })
    }
}

impl Drop for OrchestratorHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// strata patch: starts a global orchestrator with WebSocket on `port` (all interfaces) on a
/// runtime of its own, without taking over the process's signals (the release's
/// [`start_global_orchestrator`] stops on Ctrl-C / SIGTERM, so it cannot live inside a training
/// process that handles them). Fails when the port cannot be bound.
pub fn spawn_global_orchestrator(port: u16) -> Result<OrchestratorHandle, String> {
    // Bind errors only reach the log once the server runs: try the port first.
    std::net::TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("strata-coordinator")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the coordinator's runtime: {e}"))?;
    let state = GlobalCollectiveState::new();
    let server = GlobalOrchestrator {
        state: Arc::new(tokio::sync::Mutex::new(state)),
    };
    let state = server.state.clone();
    let shutdown = CancellationToken::new();
    let served = runtime.spawn({
        let shutdown = shutdown.clone();
        async move {
            server
                .serve(async move { shutdown.cancelled().await }, WsServer::new(port))
                .await
        }
    });
    // Up when a connection is accepted; an early end of the server is its bind error.
    let started = std::time::Instant::now();
    loop {
        if served.is_finished() {
            let why = match runtime.block_on(served) {
                Ok(Err(e)) => format!("{e:?}"),
                _ => "the server stopped".into(),
            };
            return Err(format!("cannot serve on port {port}: {why}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            return Err(format!("the coordinator did not come up on port {port} within 10 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(OrchestratorHandle {
        runtime: Some(runtime),
        state,
        shutdown,
    })
}

/// Start a global orchestrator with WebSocket on the given port
pub async fn start_global_orchestrator(port: u16) {
    let server = WsServer::new(port);
    let res = GlobalOrchestrator::start(os_shutdown_signal(), server).await;
    if let Err(err) = res {
        log::error!("Global Collective Orchestrator error: {err:?}");
    }
}
