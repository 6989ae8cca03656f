"""kfbox pipelines subsystem."""
