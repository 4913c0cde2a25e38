//! A connection's startup: protocol negotiation, then — when tokens are
//! configured — the password, which is a Weft token with the query role (the
//! user name is not checked). The token's tenant is kept in the connection's
//! metadata under [`TENANT`], where every statement finds it; a client cannot
//! set that key itself (startup parameters under it are dropped, `SET`
//! keeps its values elsewhere).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use weft_auth::{Auth, Caller, Role};

use crate::cancel::Cancels;

/// The metadata key holding the tenant of the connection's token.
pub(crate) const TENANT: &str = "weft.tenant";

pub(crate) struct Startup {
    auth: Arc<Auth>,
    parameters: DefaultServerParameterProvider,
    cancels: Arc<Cancels>,
}

impl Startup {
    pub(crate) fn new(auth: Arc<Auth>, cancels: Arc<Cancels>) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        // Clients that look (DBeaver, JDBC) learn that writes are refused.
        parameters.default_transaction_read_only = true;
        parameters.is_superuser = false;
        parameters.time_zone = "UTC".to_owned();
        parameters.server_version = weft_query::pg_catalog::SERVER_VERSION.to_owned();
        Self {
            auth,
            parameters,
            cancels,
        }
    }
}

/// The connection may run queries now: keep the caller's tenant, and give
/// the session its cancel key.
fn admit<C: ClientInfo>(client: &mut C, caller: &Caller, cancels: &Arc<Cancels>) {
    cancels.register(client);
    match caller.tenant() {
        Some(tenant) => client
            .metadata_mut()
            .insert(TENANT.to_owned(), tenant.to_owned()),
        None => client.metadata_mut().remove(TENANT),
    };
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.metadata_mut().remove(TENANT);
                if self.auth.is_enabled() {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                } else {
                    admit(client, &Caller::Anyone, &self.cancels);
                    finish_authentication(client, &self.parameters).await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                match self
                    .auth
                    .check_token(password.password.trim().as_bytes(), Role::Query)
                {
                    Ok(caller) => {
                        tracing::debug!(token = caller.name(), "PostgreSQL client authenticated");
                        admit(client, &caller, &self.cancels);
                        finish_authentication(client, &self.parameters).await?;
                    }
                    Err(denied) => {
                        // 28P01 invalid_password / 28000 invalid_authorization.
                        let code = if denied.is_unauthenticated() {
                            "28P01"
                        } else {
                            "28000"
                        };
                        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "FATAL".to_owned(),
                            code.to_owned(),
                            if denied.is_unauthenticated() {
                                "the password is not a token this server knows; connect with \
                                 a Weft token (role query or admin) as the password"
                                    .to_owned()
                            } else {
                                denied.to_string()
                            },
                        ))));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
