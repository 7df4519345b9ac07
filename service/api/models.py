"""`/models`: the model registry (list, upload model + manifest, delete).

An upload goes through the scoring package's safe loader only (`ModelRegistry.put`):
the manifest is validated, the file's sha256 must match it, pickles and anything that
is not a skops archive of allow-listed types are refused with the reason. Nothing is
ever unpickled. A model is persisted (DATA_DIR/models/NAME/) before it becomes active,
and the engine's scorer takes it at the next batch boundary. In Kafka mode the upload
goes to every instance through the control topic (its bytes in the record), and each
instance validates it again with the same loader before using it.

A model that loaded patterns score with cannot be deleted (409), and an upload whose
features no longer fit a loaded pattern's `score(...)` call is refused (409, with the
pattern's diagnostics).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Path, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from cep.errors import ModelError
from cep.scoring.model import Model
from service.api.patterns import control_refused, service
from service.api.responses import E401, E413, E503, problem
from service.api.schemas import (
    FeatureModel,
    ModelDeleted,
    ModelInfo,
    ModelList,
)
from service.api.security import Authorized
from service.build import NAME_PATTERN
from service.catalog import now_iso
from service.hotload import (
    ModelConflictError,
    apply_model_delete,
    apply_model_put,
    check_model,
    model_users,
    refuse_if_used,
)
from service.service_state import EngineUnavailableError, ServiceState

router = APIRouter(tags=["models"])

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="the model's name")]
E404 = problem(404, "no such model")
E409 = problem(409, "loaded patterns use the model (or would no longer fit it)")
E422 = problem(422, "refused by the safe loader (the reason)")


def _info(svc: ServiceState, model: Model) -> ModelInfo:
    m = model.manifest
    return ModelInfo(
        name=m.name, version=m.version, loaded_version=svc.registry.version(m.name),
        file=m.file, sha256=m.sha256, output=m.output,
        features=[FeatureModel(name=f.name, type=f.type, default=f.default)
                  for f in m.features],
        description=m.description, used_by=svc.catalog.users_of(m.name),
    )


@router.get("/models", response_model=ModelList, summary="Loaded models")
def list_models(request: Request) -> ModelList:
    svc = service(request)
    models = svc.registry.snapshot()
    return ModelList(models=[_info(svc, models[n]) for n in sorted(models)],
                     problems=dict(svc.model_problems))


@router.get("/models/{name}", response_model=ModelInfo, responses={**E404},
            summary="One model's manifest and users")
def get_model(name: ModelName, request: Request) -> ModelInfo:
    svc = service(request)
    model = svc.registry.snapshot().get(name)
    if model is None:
        raise HTTPException(404, f"no model named {name!r} is loaded")
    return _info(svc, model)


def put_model_sync(svc: ServiceState, name: str, data: bytes, manifest: bytes) -> ModelInfo:
    if not svc.ready:
        raise EngineUnavailableError(svc.not_ready_reason())
    # the safe loader's checks and the loaded patterns': refused here, before anything
    check_model(svc, name, data, manifest)
    offset = None
    if svc.follower is None:
        model = apply_model_put(svc, name, data, manifest, svc.call)
    else:  # Kafka mode: through the control topic, to every instance of the group
        follower = svc.follower
        out = follower.propose(lambda: follower.model_put(name, data, manifest), retry=True)
        if out.status != "applied":
            raise control_refused(follower.topic, out)
        model, offset = out.result, out.offset
    return _info(svc, model).model_copy(update={"applied_at": now_iso(),
                                               "control_offset": offset})


@router.put(
    "/models/{name}", response_model=ModelInfo, dependencies=[Authorized],
    responses={**problem(400, "not a valid multipart body"), **E401, **E409, **E413,
               **E422, **E503},
    summary="Upload a model file and its manifest (multipart)",
)
async def put_model(
    name: ModelName,
    request: Request,
    model: Annotated[UploadFile, File(description="the model file (a skops archive)")],
    manifest: Annotated[UploadFile, File(description="manifest.json")],
) -> ModelInfo:
    """`curl -F model=@model.skops -F manifest=@manifest.json`. The manifest's `name`
    must be `name` and its `sha256` the file's. Pickles (`.pkl`, `.joblib`, pickle
    bytes) are refused: they run code when loaded."""
    svc = service(request)
    data = await model.read()
    manifest_bytes = await manifest.read()
    return await run_in_threadpool(put_model_sync, svc, name, data, manifest_bytes)


def delete_model_sync(svc: ServiceState, name: str) -> ModelDeleted:
    if not svc.ready:
        raise EngineUnavailableError(svc.not_ready_reason())
    if name not in svc.registry.names():
        raise HTTPException(404, f"no model named {name!r} is loaded")
    refuse_if_used(name, svc.call(model_users(name)))  # here, before anything changes
    offset = None
    if svc.follower is None:
        removed = apply_model_delete(svc, name, svc.call)
    else:
        follower = svc.follower
        out = follower.propose(lambda: follower.model_delete(name), retry=False)
        if out.status != "applied":
            raise control_refused(follower.topic, out)
        removed, offset = out.result, out.offset
    if not removed:
        raise HTTPException(404, f"no model named {name!r} is loaded")
    return ModelDeleted(name=name, applied_at=now_iso(), control_offset=offset)


@router.delete("/models/{name}", response_model=ModelDeleted, dependencies=[Authorized],
               responses={**E401, **E404, **E409, **E503}, summary="Unload a model")
async def delete_model(name: ModelName, request: Request) -> ModelDeleted:
    return await run_in_threadpool(delete_model_sync, service(request), name)


__all__ = ["ModelConflictError", "ModelError", "router"]
