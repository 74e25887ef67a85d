"""Framework adapters, one module each, importing their framework only when used: agent_framework (Microsoft
Agent Framework), langchain (LangChain/LangGraph), mcp (MCP servers), a2a (the A2A SDK), pydantic_ai."""
