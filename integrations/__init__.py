"""Optional integrations, shipped in the wheel as ``langchain_pad.integrations``.

LangGraph stores and agents, a PostgreSQL + pgvector profile store and an
OpenAI-compatible server live here; each imports its extra dependencies lazily.
"""
