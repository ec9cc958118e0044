"""(being written)"""

rules = []
