# Gantry: one image, run by docker-compose.yml behind nginx.
FROM node:20-bookworm-slim
# The desktop (vnc plugin) and the code sandbox (tasks plugin) use these Debian packages.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap xvfb x11vnc xdotool imagemagick ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# The web console, built into the image so a read-only /app never needs to build it on start.
RUN npm run build:console
ENV HOST=0.0.0.0 PORT=9876 DATA_DIR=/data
VOLUME /data
EXPOSE 9876
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "fetch('http://127.0.0.1:9876/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["npm", "start"]
