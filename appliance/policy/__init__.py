"""Policy: the flow hooks SMTP and delivery call, and the sandboxed Lua scripts behind them."""
