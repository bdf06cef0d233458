"""Drive a vnode ECI emulator with the official Python SDK (alibabacloud-eci20180808).

Usage: eci_sdk_check.py ENDPOINT ACCESS_KEY_ID ACCESS_KEY_SECRET {v3|v2}

`v2` selects the HMAC-SHA1 query signature (`SignatureVersion=1.0`), `v3` the default
ACS3-HMAC-SHA256 header signature. Runs create, describe, status, logs, delete plus one
expected error, and prints one JSON line with what it observed. Exits non-zero on failure.
"""

import json
import os
import sys
import time

for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(var, None)

from alibabacloud_eci20180808 import models
from alibabacloud_eci20180808.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_util import models as util_models


def main() -> int:
    endpoint, ak, sk, scheme = sys.argv[1:5]
    region = "cn-hangzhou"
    kwargs = dict(access_key_id=ak, access_key_secret=sk, region_id=region, endpoint=endpoint, protocol="http")
    if scheme == "v2":
        kwargs["signature_algorithm"] = "v2"
    client = Client(open_api_models.Config(**kwargs))
    runtime = util_models.RuntimeOptions(autoretry=False, read_timeout=10000, connect_timeout=5000)
    out = {"scheme": scheme}

    name = f"sdk-{scheme}-{int(time.time() * 1000) % 100000}"
    create = models.CreateContainerGroupRequest(
        region_id=region,
        container_group_name=name,
        restart_policy="Always",
        container=[
            models.CreateContainerGroupRequestContainer(
                name="web",
                image="nginx:1.25",
                cpu=0.5,
                memory=1.0,
                tty=False,
                environment_var=[
                    models.CreateContainerGroupRequestContainerEnvironmentVar(key="MODE", value="sdk test")
                ],
                port=[models.CreateContainerGroupRequestContainerPort(port=80, protocol="TCP")],
            )
        ],
        tag=[models.CreateContainerGroupRequestTag(key="vnode.io/sdk", value=scheme)],
        client_token=f"token-{name}",
    )
    created = client.create_container_group_with_options(create, runtime).body
    group_id = created.container_group_id
    out["created"] = group_id
    out["request_id"] = created.request_id

    status = None
    deadline = time.time() + 15
    while time.time() < deadline:
        described = client.describe_container_groups_with_options(
            models.DescribeContainerGroupsRequest(
                region_id=region,
                container_group_ids=json.dumps([group_id]),
                tag=[models.DescribeContainerGroupsRequestTag(key="vnode.io/sdk", value=scheme)],
            ),
            runtime,
        ).body
        if described.total_count != 1:
            raise SystemExit(f"describe by id+tag returned {described.total_count} groups")
        group = described.container_groups[0]
        status = group.status
        if status == "Running":
            break
        time.sleep(0.2)
    out["described_status"] = status
    out["described_env"] = group.containers[0].environment_vars[0].value
    out["described_cpu"] = group.cpu

    st = client.describe_container_group_status_with_options(
        models.DescribeContainerGroupStatusRequest(region_id=region, container_group_ids=json.dumps([group_id])),
        runtime,
    ).body
    out["status"] = st.data[0].status
    out["phase"] = st.data[0].pod_status.phase

    logs = client.describe_container_log_with_options(
        models.DescribeContainerLogRequest(
            region_id=region, container_group_id=group_id, container_name="web", tail=10, timestamps=True
        ),
        runtime,
    ).body
    out["log_lines"] = len(logs.content.splitlines())
    out["log_container"] = logs.container_name

    try:
        client.describe_container_log_with_options(
            models.DescribeContainerLogRequest(region_id=region, container_group_id=group_id), runtime
        )
        out["error_code"] = None
    except Exception as e:  # the SDK raises its ClientException / TeaException
        out["error_code"] = getattr(e, "code", None)
        out["error_status"] = getattr(e, "status_code", None) or getattr(e, "statusCode", None)

    client.delete_container_group_with_options(
        models.DeleteContainerGroupRequest(region_id=region, container_group_id=group_id), runtime
    )
    gone = client.describe_container_groups_with_options(
        models.DescribeContainerGroupsRequest(region_id=region, container_group_ids=json.dumps([group_id])),
        runtime,
    ).body
    out["after_delete"] = gone.total_count
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
