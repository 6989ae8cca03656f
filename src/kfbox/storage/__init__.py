"""kfbox storage subsystem."""
