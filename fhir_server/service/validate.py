"""``$validate`` (resource-operation-validate.html): judge a resource without storing anything.

``POST [base]/[type]/$validate`` and ``POST [base]/[type]/[id]/$validate`` take the resource as the
body or as the ``resource`` parameter of a Parameters body (with an optional ``mode``: ``create``,
``update`` or ``delete``). The answer is always an OperationOutcome with status 200, listing every
problem found (or one informational issue when there is none); a 4xx means the validation itself
could not be performed (no resource, a body that is not JSON, a resource of another type).
"""

from __future__ import annotations

from typing import Any

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, Issue, bad_request, operation_outcome
from fhir_server.service.resources import ResourceService
from fhir_server.service.stamping import check_id

MODES = ("create", "update", "delete")


class ValidateService:
    def __init__(self, resources: ResourceService) -> None:
        self.resources = resources

    def validate(self, policy: AccessPolicy, resource_type: str, id: str | None, body: Any) -> dict[str, Any]:
        policy.require_read(resource_type)
        resource, mode = _resource_and_mode(body)
        mode = mode or ("update" if id is not None else "create")
        if id is not None:
            check_id(id)
        if mode == "delete":
            if id is None:
                raise bad_request("$validate in mode delete needs the resource's id in the URL")
            return operation_outcome(self._delete_issues(policy, resource_type, id))
        if resource is None:
            raise bad_request("$validate needs a resource: the body, or the 'resource' parameter of a Parameters body",
                              code="required")
        if resource.get("resourceType") != resource_type:
            raise bad_request(f"the resource is a {resource.get('resourceType') or 'resource without resourceType'}, "
                              f"the URL names {resource_type}", expression=("resourceType",))
        issues: list[Issue] = []
        if mode == "update":
            if "id" not in resource:
                issues.append(Issue("error", "required", "an update needs the resource's id", (f"{resource_type}.id",)))
            elif id is not None and resource["id"] != id:
                issues.append(Issue("error", "invariant", f"resource id {resource['id']!r} does not match the URL id "
                                    f"{id!r}", (f"{resource_type}.id",)))
        judged = resource if mode == "update" else {k: v for k, v in resource.items() if k != "id"}
        try:
            self.resources.validate(resource_type, judged)
        except FhirError as error:
            issues += error.issues
        return operation_outcome(issues or [Issue("information", "informational", "no problems found")])

    def _delete_issues(self, policy: AccessPolicy, resource_type: str, id: str) -> list[Issue]:
        try:
            self.resources.read(policy, resource_type, id)
        except FhirError as error:
            return error.issues
        return [Issue("information", "informational", f"{resource_type}/{id} exists and can be deleted")]


def _resource_and_mode(body: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(body, dict):
        raise FhirError(400, "structure", "the body must be a JSON object: a resource or a Parameters")
    if body.get("resourceType") != "Parameters":
        return body, None
    resource, mode = None, None
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list):
        raise bad_request("Parameters.parameter must be an array", code="structure")
    for parameter in parameters:
        if not isinstance(parameter, dict):
            raise bad_request("every Parameters.parameter must be an object", code="structure")
        name = parameter.get("name")
        if name == "resource":
            resource = parameter.get("resource")
            if not isinstance(resource, dict):
                raise bad_request("the 'resource' parameter carries no resource", code="required")
        elif name == "mode":
            mode = parameter.get("valueCode")
            if mode not in MODES:
                raise bad_request(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return resource, mode
