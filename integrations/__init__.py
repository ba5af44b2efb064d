"""Optional integrations, shipped in the wheel as ``langchain_pad.integrations``.

- ``server``: an OpenAI-compatible HTTP server (``langchain-pad serve``; extra ``server``);
- ``langgraph``: a profile store over any LangGraph ``BaseStore`` and graph-node helpers
  that personalize by the run context (extra ``langgraph``);
- ``postgres``: a profile store on PostgreSQL + pgvector (extra ``postgres``).

Nothing is imported here: each module needs its extra only when it is imported.
"""
