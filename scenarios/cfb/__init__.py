"""The ComplexFuncBench common Routine-following scenario (issue 18, design section 7).

Built at set-up time from the PyPI package ``nestful-wrapper`` (nothing from it is committed): a replay MCP
server over the recorded responses, one Routine per sample, train and test splits by tool sequence and
gold calls from bound runs. ``python -m scenarios.cfb --build`` writes it; see docs/cfb-scenario.md.
"""
