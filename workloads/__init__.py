"""mqbench.workloads"""
