"""mqbench.migrate"""
