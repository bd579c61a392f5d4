"""InstaGen access keys for Python API gateways: verify in process, report usage.

```python
verifier = Verifier("http://keys:8000", GATEWAY_KEY, "kafka:9092")
reporter = UsageReporter("kafka:9092")
app.add_middleware(GatewayMiddleware, verifier=verifier, reporter=reporter)
# start both in the app's lifespan: await verifier.start(); await reporter.start()
```
"""

from instagen_gateway.middleware import GatewayMiddleware, presented_key
from instagen_gateway.reporter import UsageReporter, record_id_for
from instagen_gateway.secret import is_well_formed
from instagen_gateway.verdict import Verdict
from instagen_gateway.verifier import Verifier

__all__ = [
    "GatewayMiddleware",
    "UsageReporter",
    "Verdict",
    "Verifier",
    "is_well_formed",
    "presented_key",
    "record_id_for",
]
