"""mqbench.broker"""
