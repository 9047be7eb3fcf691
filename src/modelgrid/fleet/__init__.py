"""The fleet: model replicas on Ray Serve across nodes (``modelgrid fleet``).

A composition root beside ``app.py`` and ``worker.py``, and the only code that imports Ray
(an import-linter contract): each model is a Serve application whose replicas run the engine
worker's own app (``worker.create_worker_app``: the OpenAI wire, ``/health/*``,
``/metrics``), so a gateway reaches a Serve application as an ``upstream`` replica (Serve's
proxy URL + the application's route prefix). The gateway never runs inside Ray, and the
laptop mode (``modelgrid serve``) never imports it.

- ``spec``: what to deploy (``FleetModel``) and the Serve config file (no Ray import);
- ``replica``: the Serve deployment (``EngineReplica``) and the config's app builder;
- ``prefix_router``: Serve's request router by the gateway's prefix fingerprint;
- ``cluster``: connect to a cluster, deploy, report, tear down.

Import the submodules, not this package, for what they hold.
"""
