"""kfbox serving subsystem."""
