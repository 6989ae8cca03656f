"""kfbox monitoring subsystem."""
