"""kfbox cluster subsystem."""
