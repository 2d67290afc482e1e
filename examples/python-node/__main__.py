"""The Pulumi program of this project (`pulumi up` runs it through Pulumi's Python language host)."""
from espm_node import program

program()
