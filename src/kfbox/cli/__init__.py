"""The ``kfbox`` command line: ``kfbox <noun> <verb>``, one module per noun."""
