"""kfbox's own orchestrator of the compiled KFP IR (``PipelineSpec``), with the KFP backend's semantics.

kfp stays the compiler, the DSL and the task executor (``kfp.dsl.executor_main`` runs every
Python task, as in a task pod); this package walks the IR the way the backend's driver and
Argo compiler do (``backend/src/v2``):

* :mod:`.ir` -- the spec as a graph: components, DAG tasks, executors, platform config;
* :mod:`.values` -- input resolution, CEL conditions, parameter expression selectors, placeholders;
* :mod:`.launch` -- one executor task: ExecutorInput, command line, forked or plain process, outputs;
* :mod:`.dag` -- scheduling: parallel tasks, loops, conditions, OneOf, Collected, exit handlers, retries;
* :mod:`.record` -- the worker's events for the run record (task details);
* :mod:`.names` -- names that become paths, made safe.


The server imports only :mod:`.ir` (to refuse what cannot run, at submit); the run worker
imports :mod:`.dag`.
"""
