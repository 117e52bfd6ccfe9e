//! The user commands of `ringkv.v1.Admin` (`ringkv user ...`).

use ringkv_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Role, UserError, UserStore};

/// The status for a user operation that failed.
fn status(error: UserError) -> Status {
    match error {
        UserError::Invalid(_) => Status::invalid_argument(error.to_string()),
        UserError::NotFound(_) => Status::not_found(error.to_string()),
        UserError::Store(error) => super::status::from_coordinator(error),
        UserError::Corrupt(_) | UserError::Hash(_) => Status::internal(error.to_string()),
    }
}

fn store(users: Option<&UserStore>) -> Result<&UserStore, Status> {
    users.ok_or_else(|| {
        Status::failed_precondition(
            "authentication is off on this node (authentication = true turns it on)",
        )
    })
}

pub async fn add(
    users: Option<&UserStore>,
    request: pb::UserAddRequest,
) -> Result<Response<pb::UserResponse>, Status> {
    let role: Role = request.role.parse().map_err(Status::invalid_argument)?;
    store(users)?
        .put(&request.name, &request.password, role)
        .await
        .map_err(status)?;
    tracing::info!(user = %request.name, %role, "user added");
    Ok(Response::new(pb::UserResponse {}))
}

pub async fn delete(
    users: Option<&UserStore>,
    request: pb::UserDeleteRequest,
) -> Result<Response<pb::UserResponse>, Status> {
    store(users)?.delete(&request.name).await.map_err(status)?;
    tracing::info!(user = %request.name, "user deleted");
    Ok(Response::new(pb::UserResponse {}))
}

/// Admins change anyone's password; other users their own.
pub async fn password(
    users: Option<&UserStore>,
    request: Request<pb::UserPasswordRequest>,
) -> Result<Response<pb::UserResponse>, Status> {
    let caller = request.extensions().get::<Caller>().cloned();
    let request = request.into_inner();
    if let Some(caller) = caller
        && caller.role != Role::Admin
        && caller.name != request.name
    {
        return Err(Status::permission_denied(format!(
            "user {:?} may change only its own password",
            caller.name
        )));
    }
    store(users)?
        .set_password(&request.name, &request.password)
        .await
        .map_err(status)?;
    tracing::info!(user = %request.name, "password changed");
    Ok(Response::new(pb::UserResponse {}))
}

pub async fn list(users: Option<&UserStore>) -> Result<Response<pb::UserListResponse>, Status> {
    let users = store(users)?.list().await.map_err(status)?;
    Ok(Response::new(pb::UserListResponse {
        users: users
            .into_iter()
            .map(|(name, role)| pb::UserInfo {
                name,
                role: role.to_string(),
            })
            .collect(),
    }))
}
