"""BlockQNN architecture search (floor 3): code space, Q-learning controller (no Ray), executors (sequential,
Ray), the early-stop proxy, the driver and its resumable state, and the reports."""
