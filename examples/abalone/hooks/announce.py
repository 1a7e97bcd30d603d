"""A command hook for the demo's automation rule: announce an approved model version.

Lockgate runs it with the event as JSON on stdin and ``LOCKGATE_*`` variables set. It appends
one line per delivery to ``$LOCKGATE_HOME/approvals.log``; a delivery retried after a failure
carries the same ``LOCKGATE_DELIVERY_ID``, so the hook skips one it has already announced.
(Deploying the version to an endpoint is what such a rule will do once serving lands.)
"""

import json
import os
import sys
from pathlib import Path

doc = json.load(sys.stdin)
payload = doc["event"]["payload"]
delivery = os.environ["LOCKGATE_DELIVERY_ID"]
log = Path(os.environ["LOCKGATE_HOME"]) / "approvals.log"
seen = log.read_text() if log.exists() else ""
if delivery not in seen:
    line = (
        f"{doc['event']['created_at']} {doc['environment']}: {payload['group']}/{payload['version']} "
        f"approved by {payload['by']} (delivery {delivery})"
    )
    with log.open("a") as out:
        out.write(line + "\n")
    print(line)
